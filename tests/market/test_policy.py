"""Private policies: time-of-day price limits, battery thresholds, trust in authorities and
manufacturers, and one clear ConfigError per bad file."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import ConfigError
from gridnet.market.orders import Order, Side
from gridnet.market.policy import MeterStanding, Policy, PriceWindow, load_policy, parse_policy, parse_price

SECURITY = PrivateKey.from_label("policy-security")
POLICE = PrivateKey.from_label("policy-police")
MAKER = PrivateKey.from_label("policy-maker")
OTHER_MAKER = PrivateKey.from_label("policy-other-maker")
SELLER = PrivateKey.from_label("policy-seller")
DAY = 96
"""Intervals per day."""
MIDNIGHT = 20_000 * DAY
"""Interval index of some day's 00:00 UTC."""


def at(hh: int, mm: int = 0) -> int:
    """The interval starting at hh:mm UTC on that day."""
    return MIDNIGHT + (hh * 60 + mm) // 15


def t(key: PrivateKey) -> str:
    return address_to_text(key.address)


POLICY = f"""
[[buy]]
from = "00:00"
to = "07:00"
max_price = 20000

[[buy]]
from = "07:00"
to = "22:00"
max_price = 35000

[[sell]]
from = "22:00"
to = "06:00"
min_price = 15000

[battery]
buy_below = 20
sell_above = 80.5

[trust]
meters = ["{t(SECURITY)}"]
identities = ["{t(POLICE)}"]
manufacturers = ["{t(MAKER)}"]
"""


def make_offer(side: Side = Side.OFFER) -> Order:
    return Order(
        side=side,
        owner=SELLER.address,
        owner_key=SELLER.public_key,
        meter=bytes(20),
        area="north",
        interval=at(12),
        wh=500,
        price=18_000,
        expiry=at(12),
        nonce=0,
    )


def test_buy_caps_follow_the_time_of_day() -> None:
    policy = parse_policy(POLICY)
    assert policy.max_buy_price(at(0)) == 20_000
    assert policy.max_buy_price(at(6, 45)) == 20_000
    assert policy.max_buy_price(at(7)) == 35_000
    assert policy.max_buy_price(at(21, 45)) == 35_000
    assert policy.max_buy_price(at(22)) is None  # no window: this participant does not buy
    assert policy.max_buy_price(at(12) + 5 * DAY) == 35_000  # any day


def test_sell_floor_window_wraps_midnight() -> None:
    policy = parse_policy(POLICY)
    assert policy.min_sell_price(at(22)) == 15_000
    assert policy.min_sell_price(at(23, 45)) == 15_000
    assert policy.min_sell_price(at(0)) == 15_000
    assert policy.min_sell_price(at(5, 45)) == 15_000
    assert policy.min_sell_price(at(6)) is None
    assert policy.min_sell_price(at(12)) is None


def test_interval_zero_is_midnight_utc() -> None:
    policy = Policy(buy=(PriceWindow(0, 15, 7),))
    assert policy.max_buy_price(0) == 7
    assert policy.max_buy_price(1) is None
    assert policy.max_buy_price(DAY) == 7


def test_window_built_in_code_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="buy\\[0\\] is not a window"):
        Policy(buy=(PriceWindow(60, 70, 1),))
    with pytest.raises(ConfigError, match="sell\\[0\\] is not a window"):
        Policy(sell=(PriceWindow(60, 60, 1),))


def test_whole_day_window() -> None:
    policy = parse_policy('[[buy]]\nfrom = "00:00"\nto = "24:00"\nmax_price = 1\n')
    assert all(policy.max_buy_price(MIDNIGHT + s) == 1 for s in range(DAY))


def test_battery_thresholds_trigger_buying_and_selling() -> None:
    policy = parse_policy(POLICY)
    assert policy.wants_to_buy(19.9)
    assert not policy.wants_to_buy(20)
    assert not policy.wants_to_sell(80.5)
    assert policy.wants_to_sell(81)
    assert not policy.wants_to_buy(50) and not policy.wants_to_sell(50)


def test_without_battery_section_nothing_is_triggered() -> None:
    policy = parse_policy("")
    assert not policy.wants_to_buy(0)
    assert not policy.wants_to_sell(100)


def test_flagged_meter_is_ignored_only_by_buyers_trusting_the_flagger() -> None:
    flagged = MeterStanding(MAKER.address, flagged_by=frozenset({SECURITY.address}))
    trusting = parse_policy(POLICY)
    not_trusting = parse_policy(f'[trust]\nmeters = ["{t(POLICE)}"]\n')
    assert trusting.trusts("meters", SECURITY.address)
    assert not trusting.is_offer_eligible(make_offer(), flagged)
    assert not_trusting.is_offer_eligible(make_offer(), flagged)
    assert trusting.is_offer_eligible(make_offer(), MeterStanding(MAKER.address))


def test_flag_against_the_seller_identity_counts_for_its_trusted_purpose_only() -> None:
    policy = parse_policy(POLICY)
    # POLICE is trusted for identities, SECURITY only for meters.
    assert not policy.is_offer_eligible(
        make_offer(), MeterStanding(MAKER.address, owner_flagged_by=frozenset({POLICE.address}))
    )
    assert policy.is_offer_eligible(
        make_offer(), MeterStanding(MAKER.address, owner_flagged_by=frozenset({SECURITY.address}))
    )
    assert policy.is_offer_eligible(
        make_offer(), MeterStanding(MAKER.address, flagged_by=frozenset({POLICE.address}))
    )


def test_untrusted_manufacturer_is_excluded() -> None:
    policy = parse_policy(POLICY)
    assert not policy.is_offer_eligible(make_offer(), MeterStanding(OTHER_MAKER.address))
    # The manufacturer's public key works as well as its address.
    assert policy.is_offer_eligible(make_offer(), MeterStanding(MAKER.public_key))
    assert not policy.is_offer_eligible(make_offer(), MeterStanding(OTHER_MAKER.public_key))
    # Without a manufacturers list, any manufacturer registered on chain is accepted.
    assert Policy().is_offer_eligible(make_offer(), MeterStanding(OTHER_MAKER.address))


def test_revoked_meter_is_excluded_for_everyone() -> None:
    assert not Policy().is_offer_eligible(make_offer(), MeterStanding(MAKER.address, revoked=True))


def test_bids_are_never_eligible_offers() -> None:
    assert not Policy().is_offer_eligible(make_offer(Side.BID), MeterStanding(MAKER.address))


def test_offer_filter_refuses_unregistered_meters() -> None:
    eligible = Policy().offer_filter({bytes(20): MeterStanding(MAKER.address)})
    assert eligible(make_offer())
    assert not Policy().offer_filter({})(make_offer())


def test_load_policy_from_file(tmp_path: Path) -> None:
    path = tmp_path / "home.toml"
    path.write_text(POLICY)
    assert load_policy(path) == parse_policy(POLICY, source=str(path))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[buy]\n", "not valid TOML"),
        ('[[buy]]\nfrom = "07:00"\nto = "09:00"\nmax_price = "inf GNC/kWh"\n', "got 'inf GNC/kWh'"),
        ('[[buy]]\nfrom = "07:00"\nto = "09:00"\nmax_price = "nan GNC/kWh"\n', "got 'nan GNC/kWh'"),
        ('[[buy]]\nfrom = "07:00"\nto = "09:00"\nmax_price = "1e400 GNC/kWh"\n', "got '1e400 GNC/kWh'"),
        ('[[buy]]\nfrom = "07:00"\nto = "09:00"\nmax_price = "5 XYZ/kWh"\n', "got '5 XYZ/kWh'"),
        ("[battery]\nnominal_v = inf\n", "battery.nominal_v"),
        ('[[buy]]\nfrom = "7:00"\nto = "09:00"\nmax_price = 1\n', "buy[0].from"),
        ('[[buy]]\nfrom = "07:00"\nto = "25:00"\nmax_price = 1\n', "buy[0].to"),
        ('[[buy]]\nfrom = "0²:00"\nto = "09:00"\nmax_price = 1\n', "buy[0].from"),  # (int() refused it)
        ('[[buy]]\nfrom = "07:10"\nto = "09:00"\nmax_price = 1\n', "15-minute"),
        ('[[buy]]\nfrom = "07:00"\nto = "07:00"\nmax_price = 1\n', "same time"),
        ('[[buy]]\nfrom = "07:00"\nto = "09:00"\nmax_price = 1.5\n', "buy[0].max_price"),
        ('[[buy]]\nfrom = "07:00"\nto = "09:00"\nmax_price = -1\n', "buy[0].max_price"),
        ('[[buy]]\nfrom = "07:00"\nto = "09:00"\n', "missing 'max_price'"),
        ('[[sell]]\nfrom = "07:00"\nto = "09:00"\nmax_price = 1\n', "unknown key 'max_price'"),
        (
            '[[buy]]\nfrom = "07:00"\nto = "09:00"\nmax_price = 1\n'
            '[[buy]]\nfrom = "08:00"\nto = "10:00"\nmax_price = 2\n',
            "buy[1] overlaps buy[0]",
        ),
        ("[battery]\nbuy_below = 120\n", "battery.buy_below"),
        ("[battery]\nbuy_below = 90\nsell_above = 10\n", "buy_below <= sell_above"),
        ("[battery]\nbuy_under = 10\n", "unknown key 'buy_under'"),
        ('[trust]\nmeters = ["gnnotanaddress"]\n', "trust.meters[0]"),
        ('[trust]\nmeters = "gn..."\n', "trust.meters"),
        ("[trust]\nflagz = []\n", "unknown key 'flagz'"),
        ("max_price = 3\n", "unknown key 'max_price'"),
    ],
)
def test_bad_policy_is_a_config_error_naming_the_key(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(text, source="home.toml")
    message = str(info.value)
    assert fragment in message
    assert message.startswith("home.toml")
    assert "\n" not in message


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_policy(tmp_path / "absent.toml")


# --- scheduled checks, energy units and DSO-command rules (seed 004's PML) ------------------

SEED_POLICY = """
[battery]
nominal_v = 12.0

[[check]]                  # every minute, if stored energy < 50 Ah buy until 60 Ah at < 6000 units/kWh
every = "1m"
if_stored_below = "50 Ah"
buy_until = "60 Ah"
max_price = 6000

[[check]]
every = "15m"
if_stored_below = 100
buy_until = "0.5 kWh"
max_price = 9000

[commands]
override = ["limit_import"]
"""


def test_checks_on_a_schedule_with_energy_in_ah_wh_or_kwh() -> None:
    policy = parse_policy(SEED_POLICY, source="n1.toml")
    first, second = policy.checks
    assert (first.every_s, first.below_wh, first.until_wh, first.max_price) == (60, 600, 720, 6000)
    assert (second.every_s, second.below_wh, second.until_wh, second.max_price) == (900, 100, 500, 9000)
    assert policy.nominal_v == 12.0


def test_dso_command_rules_follow_a_trusted_dso_except_the_kinds_overridden() -> None:
    dso = PrivateKey.from_label("policy-dso").address
    other = PrivateKey.from_label("policy-other").address
    text = SEED_POLICY + f'\n[trust]\ndso = ["{address_to_text(dso)}"]\n'
    policy = parse_policy(text, source="n1.toml")
    assert policy.follows(0, dso) and not policy.follows(1, dso)  # curtail export yes, limit import no
    assert not policy.follows(0, other)  # an untrusted issuer never


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            '[[check]]\nevery = "1m"\nif_stored_below = "50 Ah"\nbuy_until = "60 Ah"\nmax_price = 1\n',
            "nominal_v",
        ),
        ('[[check]]\nevery = "soon"\nif_stored_below = 1\nbuy_until = 2\nmax_price = 1\n', "check[0].every"),
        ('[[check]]\nevery = "²s"\nif_stored_below = 1\nbuy_until = 2\nmax_price = 1\n', "check[0].every"),
        (
            '[[check]]\nevery = "1m"\nif_stored_below = "inf Wh"\nbuy_until = 2\nmax_price = 1\n',
            "if_stored_below",
        ),
        ('[[check]]\nevery = "1m"\nif_stored_below = nan\nbuy_until = 2\nmax_price = 1\n', "if_stored_below"),
        (
            '[[check]]\nevery = "1m"\nif_stored_below = "5 bananas"\nbuy_until = 2\nmax_price = 1\n',
            "if_stored_below",
        ),
        (
            '[[check]]\nevery = "1m"\nif_stored_below = 50\nbuy_until = 20\nmax_price = 1\n',
            "buy_until (20 Wh) is below",
        ),
        ('[[check]]\nevery = "1m"\nif_stored_below = 50\nbuy_until = 60\n', "missing 'max_price'"),
        ('[commands]\noverride = ["reboot"]\n', "commands.override"),
        ("[battery]\nnominal_v = -12\n", "nominal_v"),
    ],
)
def test_bad_rules_are_one_line_naming_the_key(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(text, source="n1.toml")
    assert fragment in str(info.value) and "\n" not in str(info.value) and "n1.toml" in str(info.value)


def test_a_price_of_digits_int_refuses_is_one_line() -> None:
    """A command line's price in digits is read as base units: "²" passed str.isdigit and
    int() refused it (a ValueError traceback from 'gridnet tx order --price ²')."""
    assert parse_price("1200", "--price") == 1200
    with pytest.raises(ConfigError, match="--price"):
        parse_price("²", "--price")


def test_prices_may_be_written_in_gnc_or_the_scenarios_currency() -> None:
    text = '[[buy]]\nfrom = "00:00"\nto = "24:00"\nmax_price = "60 GBP/MWh"\n'
    text += '[[sell]]\nfrom = "00:00"\nto = "24:00"\nmin_price = "0.05 GNC/kWh"\n'
    pounds = {"GNC": Decimal(1), "GBP": Decimal(2)}  # 1 GBP = 2 GNC
    policy = parse_policy(text, currencies=pounds)
    assert policy.max_buy_price(0) == 12_000_000  # 0.12 GNC/kWh in base units
    assert policy.min_sell_price(0) == 5_000_000
    with pytest.raises(ConfigError, match=r"buy\[0\]\.max_price \(currencies: GNC; per kWh or MWh\)"):
        parse_policy(text)  # GBP is not a currency this policy knows
    with pytest.raises(ConfigError, match="a price like"):
        parse_policy(
            text.replace("60 GBP/MWh", "60 GBP/day"), currencies={"GNC": Decimal(1), "GBP": Decimal(2)}
        )
