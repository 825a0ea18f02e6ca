from gridnet.cli import main

main()
