"""The transaction registry: every payload type the ledger knows, and its rules.

To add a transaction type: write ``ledger/txs/<name>.py`` (payload Struct with a
unique ``tag``, ``validate_*``, ``apply_*``, ``RULES``) and add it to ``Payload``
and ``RULES`` below. ``tests/ledger/test_registry.py`` checks the two agree.
"""

from __future__ import annotations

from typing import Final

from gridnet.ledger.txs import (
    advisory,
    aggregator,
    auction,
    authority,
    bond,
    contract,
    credit,
    firmware,
    grid,
    helios,
    hop_fraud,
    identity,
    maintenance,
    meter,
    monitoring,
    privacy,
    relay,
    transfer,
    validators,
    vehicle,
)
from gridnet.ledger.txs.advisory import PublishAdvisory
from gridnet.ledger.txs.aggregator import RecordTrade, RegisterAggregators, RewardContributors
from gridnet.ledger.txs.auction import PlaceOrder
from gridnet.ledger.txs.authority import PublishFlag, RegisterAuthority
from gridnet.ledger.txs.base import AnyRules
from gridnet.ledger.txs.bond import Bond, Unbond
from gridnet.ledger.txs.coinbase import Coinbase
from gridnet.ledger.txs.contract import CloseContract, OpenContract, ReportEquivocation, SettleContract
from gridnet.ledger.txs.credit import (
    RegisterCreditBank,
    RepayLoan,
    ReportMissedRepayment,
    RequestLoan,
    WithdrawCapital,
)
from gridnet.ledger.txs.firmware import PublishFirmware
from gridnet.ledger.txs.grid import PaySubsidy, RecordOverride
from gridnet.ledger.txs.helios import (
    CloseRedemption,
    EnrollProducer,
    MintCredits,
    RedeemCredits,
    RegisterController,
    RegisterIsland,
    TransferCredits,
)
from gridnet.ledger.txs.hop_fraud import ReportHopEquivocation, ReportHopOvercredit
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.maintenance import (
    AwardTender,
    BidTender,
    ClaimTender,
    CompleteTender,
    DisputeTender,
    OpenTender,
    RegisterEquipment,
    WithdrawFromTender,
)
from gridnet.ledger.txs.meter import RegisterMeter, ReportMeterStatus, RevokeMeter, SubmitReadings
from gridnet.ledger.txs.monitoring import RegisterStation, SubmitMonitoring
from gridnet.ledger.txs.privacy import PublishAggregate, PublishGroup, RecordBills
from gridnet.ledger.txs.relay import ClaimTransit, CreateTokenPool, ReclaimPool
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.txs.validators import ChangeValidators, ReportValidatorFault
from gridnet.ledger.txs.vehicle import (
    ExpireEvDeal,
    OpenEvDeal,
    RegisterHotspot,
    RegisterVehicle,
    SettleEvDeal,
)

Payload = (
    Coinbase
    | Transfer
    | RegisterIdentity
    | Bond
    | Unbond
    | RegisterAuthority
    | PublishFlag
    | RegisterMeter
    | RevokeMeter
    | SubmitReadings
    | OpenContract
    | SettleContract
    | CloseContract
    | ReportEquivocation
    | PaySubsidy
    | RecordOverride
    | CreateTokenPool
    | ClaimTransit
    | ReclaimPool
    | ReportHopEquivocation
    | ReportHopOvercredit
    | PublishFirmware
    | PublishAdvisory
    | ReportMeterStatus
    | PlaceOrder
    | ChangeValidators
    | ReportValidatorFault
    | RegisterController
    | EnrollProducer
    | MintCredits
    | TransferCredits
    | RedeemCredits
    | CloseRedemption
    | RegisterIsland
    | RegisterCreditBank
    | RequestLoan
    | RepayLoan
    | ReportMissedRepayment
    | RegisterAggregators
    | RecordTrade
    | RewardContributors
    | RegisterEquipment
    | OpenTender
    | BidTender
    | AwardTender
    | CompleteTender
    | WithdrawFromTender
    | RegisterStation
    | SubmitMonitoring
    | PublishGroup
    | PublishAggregate
    | RecordBills
    | RegisterVehicle
    | RegisterHotspot
    | OpenEvDeal
    | SettleEvDeal
    | ExpireEvDeal
    | WithdrawCapital
    | ClaimTender
    | DisputeTender
)
"""Every payload a transaction can carry (msgspec decodes by the tag)."""

RULES: Final[dict[type, AnyRules]] = {
    rules.payload_type: rules
    for rules in (
        transfer.RULES,
        identity.RULES,
        bond.BOND_RULES,
        bond.UNBOND_RULES,
        authority.REGISTER_AUTHORITY_RULES,
        authority.PUBLISH_FLAG_RULES,
        meter.REGISTER_METER_RULES,
        meter.REVOKE_METER_RULES,
        meter.SUBMIT_READINGS_RULES,
        contract.OPEN_RULES,
        contract.SETTLE_RULES,
        contract.CLOSE_RULES,
        contract.EQUIVOCATION_RULES,
        grid.SUBSIDY_RULES,
        grid.OVERRIDE_RULES,
        relay.CREATE_POOL_RULES,
        relay.CLAIM_RULES,
        relay.RECLAIM_RULES,
        hop_fraud.EQUIVOCATION_RULES,
        hop_fraud.OVERCREDIT_RULES,
        firmware.PUBLISH_FIRMWARE_RULES,
        advisory.PUBLISH_ADVISORY_RULES,
        meter.STATUS_RULES,
        auction.PLACE_ORDER_RULES,
        validators.CHANGE_VALIDATORS_RULES,
        validators.REPORT_VALIDATOR_FAULT_RULES,
        helios.REGISTER_CONTROLLER_RULES,
        helios.ENROLL_RULES,
        helios.MINT_RULES,
        helios.TRANSFER_CREDITS_RULES,
        helios.REDEEM_RULES,
        helios.CLOSE_REDEMPTION_RULES,
        helios.REGISTER_ISLAND_RULES,
        credit.REGISTER_BANK_RULES,
        credit.REQUEST_LOAN_RULES,
        credit.REPAY_RULES,
        credit.MISSED_RULES,
        aggregator.REGISTER_RULES,
        aggregator.RECORD_RULES,
        aggregator.REWARD_RULES,
        maintenance.REGISTER_EQUIPMENT_RULES,
        maintenance.OPEN_RULES,
        maintenance.BID_RULES,
        maintenance.AWARD_RULES,
        maintenance.COMPLETE_RULES,
        maintenance.WITHDRAW_RULES,
        monitoring.REGISTER_STATION_RULES,
        monitoring.SUBMIT_MONITORING_RULES,
        privacy.PUBLISH_GROUP_RULES,
        privacy.PUBLISH_AGGREGATE_RULES,
        privacy.RECORD_BILLS_RULES,
        vehicle.REGISTER_VEHICLE_RULES,
        vehicle.REGISTER_HOTSPOT_RULES,
        vehicle.OPEN_DEAL_RULES,
        vehicle.SETTLE_DEAL_RULES,
        vehicle.EXPIRE_DEAL_RULES,
        credit.WITHDRAW_RULES,
        maintenance.CLAIM_RULES,
        maintenance.DISPUTE_RULES,
    )
}
"""Rules of every signed transaction type (Coinbase is checked by the block)."""
