"""Energy contracts (state-full channels): terms every party signs, and the buyer's
signed states acknowledging delivered energy (pure)."""
