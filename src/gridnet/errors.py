"""One exception tree for GRIDNET.

Every rejection names the rule it enforces: the class name is the rule and
``rule`` returns it, so tests and peers can assert *which* rule was broken.
Messages are one line a person understands (what, where, what to do).
"""

from __future__ import annotations

ECHO_CHARS = 60
"""The most characters of a value a message echoes (``shown``)."""


def shown(value: object, limit: int = ECHO_CHARS) -> str:
    """``value`` as a message echoes it: its repr, cut to ``limit`` characters (with "...")
    so that a long value in a file (a 10,000-character time) keeps the message one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(exc: BaseException) -> str:
    """An error as one line: its rule (class name) and message."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


class GridnetError(Exception):
    """Base of every error GRIDNET raises on purpose."""

    @property
    def rule(self) -> str:
        return type(self).__name__


# --- user input, configuration and files ------------------------------------------------


class ConfigError(GridnetError):
    """A configuration file (genesis, scenario, policy) is missing or invalid."""


class GridOverloaded(ConfigError):
    """A scenario's homes meter more in an interval than its feeders can carry: the interval's
    power flow has no solution (a voltage collapse)."""


class UnbondingTooShort(ConfigError):
    """The genesis sets an unbonding delay no longer than the longest dispute window: a
    stake could leave its unbonding before the fraud it backs is proven and forfeited."""


class RunDamaged(ConfigError):
    """A run's output (its report.json, a series file it names) is not as the run wrote it:
    edited or damaged since. ``what``: what is wrong, where (the message adds the remedy)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}; run the scenario again")
        self.what = what


class KeyFileError(GridnetError):
    """A key file cannot be written or read safely."""


class StoreError(GridnetError):
    """A data directory is missing, not initialised, or belongs to another chain."""


class RulesChanged(StoreError):
    """A chain made under other consensus rules than this gridnet's (``RULES_VERSION``)."""


class StoreCorrupt(StoreError):
    """Data this node stored does not read back: its store is damaged (not a peer's or a
    client's fault)."""

    def __init__(self, message: str, finding: str | None = None) -> None:
        super().__init__(message)
        self.finding = message if finding is None else finding
        """What was found, without the file and the advice (``chain verify`` reports it)."""


class DataDirExposed(StoreError):
    """A node's data directory can be written by every user of the machine (mode o+w)."""


class UndoMismatch(StoreCorrupt):
    """A block's stored undo record does not take the state back to its parent's state root."""


class StorePermission(StoreError):
    """This process may not read (a writer: or write) the store file or its data directory:
    its owner or mode, read-only media, or something else in the file's place (not damage:
    the store may be intact)."""


class DataDirLocked(StoreError):
    """Another process writes to the data directory (it holds its lock)."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class InvalidAddress(GridnetError):
    """A textual address is malformed or its checksum does not match."""


# --- encoding ---------------------------------------------------------------------------


class DecodeError(GridnetError):
    """Bytes that do not decode to the expected object."""


class Oversize(DecodeError):
    """Input longer than the limit for its kind."""


class TrailingBytes(DecodeError):
    """Extra bytes after a complete object."""


class UnknownField(DecodeError):
    """More fields than the object type has."""


class WrongType(DecodeError):
    """A field of the wrong type or out of its range."""


class Malformed(DecodeError):
    """Bytes that are not valid MessagePack at all."""


class NonCanonicalEncoding(DecodeError):
    """Valid MessagePack that is not the one canonical encoding of its value."""


# --- transactions -----------------------------------------------------------------------


class InvalidTransaction(GridnetError):
    """A transaction breaks a rule; subclasses name the rule."""


class BadSignature(InvalidTransaction):
    """The signature does not verify for the sender's key and this chain."""


class MalformedTransaction(InvalidTransaction):
    """A field has the wrong size or an out-of-range value."""


class NonceTooLow(InvalidTransaction):
    """The nonce was already used: a replayed or superseded transaction."""


class NonceGap(InvalidTransaction):
    """The nonce is ahead of the account's next nonce."""


class StateOutOfRange(InvalidTransaction):
    """The transaction would leave a state entry that its table's type does not hold: a
    number past 2^63 - 1 or below 0 (a counter summing values a participant chose), or an
    entry too large to read back."""


class InsufficientBalance(InvalidTransaction):
    """The sender cannot pay amount plus fee."""


class FeeTooLow(InvalidTransaction):
    """The fee is below the chain's minimum for the transaction's size."""


class IdentityProofInsufficient(InvalidTransaction):
    """The identity proof-of-work does not reach the identity target."""


class IdentityAlreadyRegistered(InvalidTransaction):
    """The address already has a registered identity."""


class UnknownIdentity(InvalidTransaction):
    """The operation needs a registered identity and the sender has none."""


class IdentityRevoked(InvalidTransaction):
    """The address's identity was revoked by a proven fraud: it can never register again,
    and what needs an identity is refused. Taking part again takes a new address and a new
    identity proof-of-work."""


class InsufficientBond(InvalidTransaction):
    """Unbonding more coin than is bonded."""


class MisplacedCoinbase(InvalidTransaction):
    """A coinbase anywhere but first in a block, or a signed transaction first."""


# --- meters and readings ---------------------------------------------------------------


class InvalidReading(InvalidTransaction):
    """A signed meter reading breaks a rule; subclasses name the rule."""


class ReadingSignatureInvalid(InvalidReading):
    """The reading is not signed by the registered meter's key (a foreign key, or a
    reading altered or replayed for another interval)."""


class UnknownMeter(InvalidReading):
    """The reading names a meter that is not registered on chain."""


class RevokedMeter(InvalidReading):
    """The meter's certificate was revoked by its manufacturer."""


class ConflictingReading(InvalidReading):
    """A second, different reading for an interval the meter already reported."""


class DuplicateReading(InvalidReading):
    """The same reading was already recorded."""


class ReadingOutOfOrder(InvalidReading):
    """A reading for an interval before the meter's latest recorded one."""


class ReadingGapEarly(InvalidReading):
    """A reading that leaves an interval without a reading, while that interval's reading may
    still come (``GAP_GRACE_INTERVALS``)."""


class CountersWentBackwards(InvalidReading):
    """A cumulative counter is lower than in the meter's previous reading."""


class InconsistentCounters(InvalidReading):
    """The cumulative counters grew by less than the interval's own energy."""


class MeterAlreadyRegistered(InvalidTransaction):
    """The meter id is already registered on chain."""


class MeterBindingInvalid(InvalidTransaction):
    """The meter's own key did not bind its registration to the sender on this chain: a
    registration copied out of another owner's transaction (front-running) or from another
    chain names the owner and chain the meter signed for, not the copier's."""


class NotAuthorized(InvalidTransaction):
    """The sender lacks the authority role (or ownership) the operation needs."""


class AuthorityAlreadyRegistered(InvalidTransaction):
    """The address is already a registered authority."""


class FirmwareInstallFailed(GridnetError):
    """A meter could not install a firmware release (it keeps its old firmware)."""


class TelemetryTimeout(GridnetError, TimeoutError):
    """Meter readings did not all reach the collector within the time allowed."""


class InvalidCertificate(InvalidTransaction):
    """A meter certificate is not signed by the manufacturer it names, or that key is not
    a registered manufacturer."""


# --- security layer (SEL): advisories, firmware releases, meter status -------------------


class VulnerableMeter(InvalidTransaction):
    """A meter runs firmware that an active advisory covers (at or above the chain's
    minimum severity): no contract, settlement, subsidy or auction order involves it until
    it reports a release the advisories do not cover."""


class AdvisoryNotAuthorized(NotAuthorized):
    """The sender is not an advisory authority: registered with the advisory role and named
    in the genesis (``[security] advisory_authorities``)."""


class UnknownAdvisory(InvalidTransaction):
    """The withdrawn advisory was not published by this authority for this product."""


class FirmwareReleaseExists(InvalidTransaction):
    """The manufacturer already published this vendor, model and version (a release is
    immutable: a new image needs a new version)."""


class UnknownFirmwareRelease(InvalidTransaction):
    """A meter status names firmware its manufacturer never published with that image
    hash (and that is not the firmware its certificate shipped with)."""


class MeterStatusSignatureInvalid(InvalidTransaction):
    """The meter status is not signed by the meter's own key."""


class MeterStatusMismatch(InvalidTransaction):
    """The meter status names another meter, vendor or model than the one registered."""


class StaleMeterStatus(InvalidTransaction):
    """The meter status's sequence number does not exceed the last recorded one (a replayed
    or reordered status)."""


# --- on-chain auctions (seed 004's ETL) ---------------------------------------------------


class InvalidAuctionOrder(InvalidTransaction):
    """An on-chain order breaks a rule; subclasses name the rule."""


class MarketOffChain(InvalidAuctionOrder):
    """The chain's genesis clears auctions off chain (``[market] mode = "offchain"``): it
    takes no order transactions."""


class AuctionClosed(InvalidAuctionOrder):
    """The auction of that delivery interval has closed (``auction_close_s`` before it)."""


class AuctionTooFarAhead(InvalidAuctionOrder):
    """The delivery interval is more than a day of intervals after the block's."""


class AuctionFull(InvalidAuctionOrder):
    """The auction already holds the most orders one auction may hold."""


class TooManyAuctionOrders(InvalidAuctionOrder):
    """The owner already placed the most orders one owner may place in one auction."""


class WrongArea(InvalidAuctionOrder):
    """The order's area is not the area its meter is registered in."""


# --- permissioned chain: validators and their faults --------------------------------------


class NotPermissioned(InvalidTransaction):
    """A validator-set transaction on a proof-of-work chain."""


class StaleValidatorSet(InvalidTransaction):
    """A ChangeValidators names another sequence number than the set's next."""


class ValidatorChangePending(InvalidTransaction):
    """A ChangeValidators while another is pending (its block not final yet) or being handed
    over on the branch: one change at a time, the next once it is done."""


class InsufficientApprovals(InvalidTransaction):
    """A ChangeValidators is not approved by validators holding more than two thirds of the
    votes (each approval a valid signature of a member, each member once)."""


class BadValidatorSet(InvalidTransaction):
    """A proposed validator set is empty, too large, unordered, or lists a key twice."""


class ValidatorFaultNotProven(InvalidTransaction):
    """A ReportValidatorFault whose two items are not two different sealed headers of one
    slot, nor two conflicting votes, signed by one key."""


class NotInValidatorSet(InvalidTransaction):
    """A ReportValidatorFault against a key that is not (or no longer) in the set."""


class FaultBeforeMembership(InvalidTransaction):
    """A ReportValidatorFault whose items weigh from a slot before the key's current
    membership began (it left the set and was approved back since): an old proof does not
    remove it again."""


class LastValidator(InvalidTransaction):
    """A fault report would leave the validator set empty (the chain could not go on)."""


# --- Helios energy credits (seed 002) -------------------------------------------------------


class InvalidCredits(InvalidTransaction):
    """A Helios credit transaction breaks a rule; subclasses name it."""


class ControllerExists(InvalidCredits):
    """The sender has registered a controller of that name already (each registrant names its own)."""


class UnknownController(InvalidCredits):
    """No controller of that name (id) is registered."""


class InsufficientConsortium(InvalidCredits):
    """Fewer valid signatures of distinct consortium members than the controller's threshold."""


class ProducerEnrolled(InvalidCredits):
    """The meter is already enrolled with that controller."""


class NotEnrolled(InvalidCredits):
    """The meter is not enrolled with that controller."""


class MintTooEarly(InvalidCredits):
    """A mint that covers fewer intervals than the producer's frequency, intervals already
    minted, or an interval that has not ended."""


class ReadingsMissing(InvalidCredits):
    """An interval a mint or a redemption's verdict needs has no reading on chain."""


class BelowMinimumMint(InvalidCredits):
    """A mint of fewer Wh than the producer's minimum."""


class InsufficientCredits(InvalidCredits):
    """More credits transferred or redeemed than the sender holds."""


class UnknownRedemption(InvalidCredits):
    """No open redemption with that id at that controller."""


class IslandExists(InvalidCredits):
    """The controller already runs an island, or a meter named is in one already."""


class IslandCapExceeded(InvalidCredits):
    """A trade or a redemption that would take more from (or put more into) an island node's
    meter per interval than its cap allows."""


class IslandConsentMissing(InvalidCredits):
    """A meter an island's registration names carries no valid consent of its owner: signed by
    another key, forged, or given for another island, meter, role or caps."""


class MeterRedemptionOpen(InvalidCredits):
    """A redemption on a meter that has one open already (at any controller): one import would
    discharge both."""


class RedemptionOpen(InvalidCredits):
    """A redemption that is neither discharged by the meter's readings nor past its due
    interval: no verdict yet."""


# --- the credit bank (seed 003, section 3.1.3) ------------------------------------------------


class InvalidLoan(InvalidTransaction):
    """A credit-bank transaction breaks a rule; subclasses name it."""


class CreditBankExists(InvalidLoan):
    """The sender has registered a credit bank of that name already (each registrant names its own)."""


class UnknownCreditBank(InvalidLoan):
    """No credit bank of that name (id) is registered."""


class LoanOutstanding(InvalidLoan):
    """The borrower has a loan that is not repaid (open, in arrears or defaulted)."""


class CreditValueTooLow(InvalidLoan):
    """The borrower's credit value, computed from its history on chain, is below the bank's
    published minimum."""


class LoanTooLarge(InvalidLoan):
    """More than the bank's criteria lend: its ``max_loan``, or the borrower's credit value
    times ``coins_per_point``."""


class BankCapitalShort(InvalidLoan):
    """The bank holds less capital (coin not lent out) than a loan or a withdrawal asks for."""


class NoOpenLoan(InvalidLoan):
    """The address owes nothing: no loan, or its loan is repaid."""


class RepaymentNotDue(InvalidLoan):
    """No installment of the loan has fallen due unpaid since the last one judged."""


class StaleWithdrawal(InvalidLoan):
    """A WithdrawCapital names another sequence number than the bank's next: an act already
    accepted (a replay) or one out of order."""


# --- aggregator trading (seed 003, section 3.1) -------------------------------------------


class InvalidAggregatorTrade(InvalidTransaction):
    """A consortium of energy aggregators' act or trade record breaks a rule."""


class AggregatorsExist(InvalidAggregatorTrade):
    """The sender has registered a consortium of aggregators of that name already (each registrant
    names its own)."""


class UnknownAggregators(InvalidAggregatorTrade):
    """No consortium of aggregators of that name (id) is registered."""


class NoConsortiumMajority(InvalidAggregatorTrade):
    """Fewer than a majority of the consortium's members signed the act (each counts once,
    with a valid signature)."""


class RequestSignatureInvalid(InvalidAggregatorTrade):
    """The buyer's request is not signed by the key it names."""


class SellerSignatureInvalid(InvalidAggregatorTrade):
    """The grant's DSS is not the seller's signature."""


class ProcessingSignatureInvalid(InvalidAggregatorTrade):
    """The record's DSP is not a valid signature of a member of the consortium."""


class GrantExceedsRequest(InvalidAggregatorTrade):
    """The energy granted (AEG) exceeds the energy requested (AER), or the agreed price the
    buyer's maximum."""


class GrantMismatch(InvalidAggregatorTrade):
    """The grant does not answer the request (another TID), or the seller is the buyer."""


class TradeMeterNotOwned(InvalidAggregatorTrade):
    """The buyer's or the seller's meter is not registered (or revoked) or belongs to another."""


class SellerReadingMissing(InvalidAggregatorTrade):
    """The seller's meter has no reading on chain for the request's interval: what it has to
    sell there is not known yet."""


class GrantExceedsAvailable(InvalidAggregatorTrade):
    """The grant exceeds what the seller's reading shows exported and not yet sold in that
    interval (by contracts or other records): it would double-sell."""


class TradeRecorded(InvalidAggregatorTrade):
    """A record of that TID (buyer's request) is on chain already."""


class TransferMismatch(InvalidAggregatorTrade):
    """ET is not the energy granted at the agreed price plus the aggregators' fee."""


class RequestInFuture(InvalidAggregatorTrade):
    """The request's time (TR) is after the block's: the time taken would be negative."""


class PeriodRewarded(InvalidAggregatorTrade):
    """The period's contributors were rewarded already (its records are closed)."""


class PeriodNotOver(InvalidAggregatorTrade):
    """The period's last interval has not ended: its contributors are not known yet."""


class PeriodFull(InvalidAggregatorTrade):
    """The period has as many distinct sellers as its tally holds."""


class NotTopContributors(InvalidAggregatorTrade):
    """The rewarded sellers are not the period's top contributors by energy sold through the
    consortium, in order."""


class TreasuryShort(InvalidAggregatorTrade):
    """The consortium's collected fees do not cover the rewards."""


# --- maintenance tenders (seed 003, section 3.5) -----------------------------------------


class InvalidTender(InvalidTransaction):
    """A maintenance-tender transaction breaks a rule; subclasses name it."""


class EquipmentExists(InvalidTender):
    """The vendor registered equipment with that serial number already."""


class UnknownEquipment(InvalidTender):
    """No equipment with that id is registered."""


class NotEquipmentOwner(InvalidTender):
    """Only the equipment's owner opens its tender or confirms its service."""


class TenderExists(InvalidTender):
    """The equipment has a tender that is not closed yet."""


class UnknownTender(InvalidTender):
    """No tender with that id."""


class BiddingClosed(InvalidTender):
    """A bid after the last interval of the tender's bidding."""


class BiddingDeadlineOutOfRange(InvalidTender):
    """A tender out of warranty whose bidding closes before the block's interval or more than
    a week after it."""


class TenderNotOpen(InvalidTender):
    """A bid or an award on a tender that is not taking bids: agreed already (or its service
    claimed)."""


class BiddingOpen(InvalidTender):
    """An award before the tender's bidding has closed."""


class UnregisteredBidder(InvalidTender):
    """The bidder is neither a registered maintenance team nor the equipment's vendor."""


class BidAboveDeposit(InvalidTender):
    """A bid asks more than the owner deposited."""


class BidBelowReserve(InvalidTender):
    """A bid asks less than the tender's reserve, the least price its owner accepts."""


class ReserveAboveDeposit(InvalidTender):
    """A tender's reserve (the least price it accepts) is above its deposit: no bid could meet
    both."""


class AlreadyBid(InvalidTender):
    """A second bid from the same bidder on one tender (one bid each)."""


class TooManyBids(InvalidTender):
    """A tender holds the most bids it takes already."""


class EmptyBid(InvalidTender):
    """A bid that asks nothing (a price of 0)."""


class EmptyDeposit(InvalidTender):
    """A tender with no deposit to pay its service from."""


class UnknownMaintenanceMode(InvalidTender):
    """A tender's mode is neither remote (0) nor on-site (1)."""


class PenaltyOutOfRange(InvalidTender):
    """A tender's ``penalty_pct`` is above 100."""


class ServiceTimeOutOfRange(InvalidTender):
    """A tender's ``service_intervals`` is not 1 to a week."""


class TenderNotAgreed(InvalidTender):
    """The tender is still open (taking bids, or waiting for its award): nobody is agreed to
    service it, so nothing is completed, withdrawn from or claimed."""


class NotTheWinner(InvalidTender):
    """The sender is not the tender's diagnosis node (nor, to end an agreement, its owner):
    only the diagnosis node claims its service or backs out."""


class VendorBoundByWarranty(InvalidTender):
    """The vendor withdraws from a repair its warranty covers: it cannot back out."""


class ServiceNotOverdue(InvalidTender):
    """The owner ends an agreement before its service time has passed."""


class ServiceClaimed(InvalidTender):
    """An agreement whose service the diagnosis node claimed done is withdrawn from: the owner
    confirms or disputes it now."""


class ServiceOverdue(InvalidTender):
    """The diagnosis node claims a service after its service time: the owner may end the
    agreement instead."""


class ClaimTooEarly(InvalidTender):
    """A claimed service is paid only once the owner's dispute window has passed."""


class TenderClosed(InvalidTender):
    """The tender is completed, withdrawn, disputed or unserved: its coin was paid out already."""


class NothingToDispute(InvalidTender):
    """The owner disputes a tender whose service nobody claimed."""


class DisputeWindowClosed(InvalidTender):
    """The owner disputes a claimed service after its dispute window."""


class DisputeWindowOutOfRange(InvalidTender):
    """A tender's ``dispute_intervals`` is not 1 to a week."""


# --- generation monitoring (seed 003, section 3.4) ---------------------------------------


class InvalidMonitoring(InvalidTransaction):
    """A monitoring transaction breaks a rule; subclasses name it."""


class StationExists(InvalidMonitoring):
    """The sender has registered a station of that name already (each registrant names its own)."""


class UnknownStation(InvalidMonitoring):
    """No station with that id is registered."""


class NotStationMeter(InvalidMonitoring):
    """A switch report names a switch the station does not have."""


class NotStationOwner(InvalidMonitoring):
    """Records submitted by someone other than the station's owner."""


class MonitoringSignatureInvalid(InvalidMonitoring):
    """A record is not signed by the station's meter that makes it."""


class MeasurementOutOfOrder(InvalidMonitoring):
    """A record is not its meter's next one (sequence one more, a later time), or is stamped
    more than 15 minutes after the block."""


# --- privacy-preserving aggregation (seed 003, section 3.3) -------------------------------


class InvalidAggregate(InvalidTransaction):
    """A privacy-group transaction breaks a rule; subclasses name it."""


class GroupExists(InvalidAggregate):
    """The sender has published a privacy group of that name already (each registrant names its
    own)."""


class UnknownGroup(InvalidAggregate):
    """No privacy group with that id."""


class NotGroupMember(InvalidAggregate):
    """The pseudonym is not in the group's Bloom filter."""


class PseudonymProofInvalid(InvalidAggregate):
    """The proof of knowledge of the pseudonym's key does not verify."""


class SlotNotOver(InvalidAggregate):
    """An aggregate for a slot that has not ended."""


class SlotAggregated(InvalidAggregate):
    """The slot has its aggregate already."""


class AggregateIncomplete(InvalidAggregate):
    """An aggregate over fewer (or more) members than the group has."""


class BillsMismatch(InvalidAggregate):
    """The energy billed is not the group's aggregates over the slots billed (or one is missing)."""


# --- electric vehicles: vehicle-to-vehicle trading (seed 003, section 3.2) ------------------


class InvalidVehicleTrade(InvalidTransaction):
    """A vehicle-to-vehicle transaction breaks a rule; subclasses name it."""


class VehicleExists(InvalidVehicleTrade):
    """A vehicle with that key is registered already."""


class UnknownVehicle(InvalidVehicleTrade):
    """No vehicle with that id is registered (or not by the hotspot's authority)."""


class OwnerConsentInvalid(InvalidVehicleTrade):
    """The owner's signature consenting to a vehicle's registration does not verify."""


class VehicleSignatureInvalid(InvalidVehicleTrade):
    """The vehicle's own key did not sign its registration."""


class DealLapsed(InvalidVehicleTrade):
    """A settlement after the deal's expiry window: it can only expire."""


class HotspotExists(InvalidVehicleTrade):
    """The sender has registered a charging hotspot of that name already (each registrant names its
    own)."""


class UnknownHotspot(InvalidVehicleTrade):
    """No charging hotspot with that id is registered."""


class DealTermsMismatch(InvalidVehicleTrade):
    """A deal's station fee, discounts or penalty are not its hotspot's."""


class DealSignatureInvalid(InvalidVehicleTrade):
    """A deal is not signed by both its vehicles."""


class EvProcessingInvalid(InvalidVehicleTrade):
    """A deal or its settlement is not signed by one of the hotspot's aggregators."""


class DealExists(InvalidVehicleTrade):
    """A deal with these terms is on chain already."""


class DealStarted(InvalidVehicleTrade):
    """A deal opened once its first interval has begun."""


class DealTooFarAhead(InvalidVehicleTrade):
    """A deal's first interval is more than a week of intervals after the block's: it would lock
    both deposits and the vehicles' commitments until long after it could expire."""


class BeyondVehicle(InvalidVehicleTrade):
    """A deal commits a vehicle to more energy than its battery holds, or than its charging
    power moves over the deal's intervals."""


class UnknownDeal(InvalidVehicleTrade):
    """No vehicle-to-vehicle deal with that id."""


class DealClosed(InvalidVehicleTrade):
    """The deal is settled or expired already."""


class DealNotOver(InvalidVehicleTrade):
    """A settlement before the deal's last interval ended, or an expiry before its grace ended."""


class StationSignatureInvalid(InvalidVehicleTrade):
    """The delivery is not signed by the hotspot's charging station."""


class DeliveryMismatch(InvalidVehicleTrade):
    """The delivery names another deal or another charging vehicle's meter, exceeds the deal,
    or leaves a shortfall without naming who broke the deal (or names a breaker of a deal kept)."""


# --- market (off chain) ----------------------------------------------------------------


class InvalidOrder(GridnetError):
    """A signed bid or offer breaks a rule; subclasses name the rule."""


class MalformedOrder(InvalidOrder):
    """A field has an impossible value (no energy, an unknown side, an empty area)."""


class OwnerMismatch(InvalidOrder):
    """The order's owner is not the address of the key it says signed it."""


class OrderSignatureInvalid(InvalidOrder):
    """The signature is not the owner key's signature of this order (a foreign key, or an
    order altered after signing)."""


class OrderExpired(InvalidOrder):
    """The order's expiry or its delivery interval is already past."""


class OrderTooFarAhead(InvalidOrder):
    """The order is for a delivery interval beyond the window a node keeps orders for."""


class OrderOwnerInvalid(InvalidOrder):
    """The order's owner may not trade with its meter on the node's head, by the rule the
    chain's PlaceOrder applies (``rule`` is that rule's name: ``UnknownIdentity``,
    ``IdentityRevoked``, ``MeterNotOwned`` or ``WrongArea``); wraps that error. A node keeps
    and gossips an order only from a registered identity, for a meter registered to it in
    the order's area: free keys cannot fill a topic."""

    def __init__(self, error: InvalidTransaction) -> None:
        super().__init__(f"{error}: the order is refused")
        self.error = error

    @property
    def rule(self) -> str:
        return self.error.rule


class OrderRefused(GridnetError):
    """A valid order a node does not keep (its book's bounds); not a fault of who sent it."""


class TooManyOrders(OrderRefused):
    """The order's key already holds the most orders one key may hold on that topic."""


class OrderFromVulnerableMeter(OrderRefused):
    """The order's meter runs firmware an active advisory covers (``VulnerableMeter``): the
    security layer leaves it out of the auction until the meter reports a fixing release."""


class OrderBookFull(OrderRefused):
    """The topic, or the whole book, is full of orders for deliveries as near as this one."""


class OrderNotInAuction(InvalidOrder):
    """An order handed to an auction it does not belong to (other side, area or interval)."""


# --- energy contracts ------------------------------------------------------------------


class InvalidContract(InvalidTransaction):
    """An energy-contract operation breaks a rule; subclasses name the rule."""


class MissingPartySignature(InvalidContract):
    """A party (buyer, seller or a line owner on the path) has not signed the terms."""


class ContractForAnotherChain(InvalidContract):
    """The terms name another chain: their parties agreed to a contract there, not here (terms
    signed for one chain are not replayed on another)."""


class MalformedContract(InvalidContract):
    """Terms or a state out of shape: empty or reversed intervals, zero energy, duplicates."""


class MeterNotOwned(InvalidContract):
    """A contract names a meter that is not registered to that party."""


class ContractExists(InvalidContract):
    """A contract with the same terms is already open."""


class UnknownContract(InvalidContract):
    """No open contract has that id."""


class ContractClosed(InvalidContract):
    """The contract was already closed."""


class StateSignatureInvalid(InvalidContract):
    """The state is not signed by the contract's buyer."""


class StaleState(InvalidContract):
    """A state whose sequence number is not above the last one settled, and that acknowledges
    no more energy in any interval than was paid."""


class StateRegression(InvalidContract):
    """A state acknowledges less energy in an interval than was already paid."""


class DeliveryOutsideContract(InvalidContract):
    """A state acknowledges energy in an interval the terms do not cover."""


class ContractLimitExceeded(InvalidContract):
    """A state acknowledges more energy than the terms' maximum."""


class MissingReading(InvalidContract):
    """No reading of the seller's meter is on chain for an interval being paid."""


class DoubleSelling(InvalidContract):
    """Across its contracts the seller would be paid for more energy in an interval than
    its meter signed as exported."""


class DisputeWindowOpen(InvalidContract):
    """Closing before the contract ended, or before its dispute window passed."""


class NotEquivocation(InvalidContract):
    """The two states prove no equivocation: they are not buyer-signed states of one contract
    that differ under the same sequence number, or whose later one acknowledges less energy in
    some interval than the earlier one."""


class FraudAlreadyReported(InvalidContract):
    """This contract's equivocation was already punished."""


class DisputeWindowTooLong(InvalidContract):
    """The terms set a dispute window longer than the chain's ``max_dispute_window`` (a
    stake could leave its unbonding before the fraud it backs is proven)."""


# --- subsidies and DSO commands ---------------------------------------------------------


class SubsidyAlreadyPaid(InvalidTransaction):
    """A reading was already subsidised: no reading is subsidised twice."""


class CommandSignatureInvalid(InvalidTransaction):
    """A DSO command is not signed by the key it names as issuer."""


class CommandNotForMeter(InvalidTransaction):
    """The DSO command does not address that meter."""


class OverrideAlreadyRecorded(InvalidTransaction):
    """The owner's override of that command for that meter is already on chain."""


# --- data relays ---------------------------------------------------------------------------


class InvalidRelay(InvalidTransaction):
    """A transmission token, hop entry or transit claim breaks a rule."""


class TokenSignatureInvalid(InvalidRelay):
    """The token is not signed by its pool's owner for this datagram (a token moved to
    another datagram fails here)."""


class TokenPreimageInvalid(InvalidRelay):
    """The revealed preimage does not hash forward to the pool's chain."""


class PoolAlreadyRedeemed(InvalidRelay):
    """The claim pays no depth beyond what the pool already paid."""


class UnknownPool(InvalidRelay):
    """No token pool with that id exists (or it was reclaimed)."""


class PoolExists(InvalidRelay):
    """A pool with the same owner and final hash already exists."""


class PoolIdUsed(InvalidRelay):
    """A pool of the same owner and final hash was created and reclaimed: a pool id is used
    once, since the tokens and claims signed for the old pool would be valid against a new one."""


class PoolNotExpired(InvalidRelay):
    """The pool cannot be reclaimed before its expiry height."""


class PoolExpired(InvalidRelay):
    """The pool expired: it pays no more claims."""


class HopEntryInvalid(InvalidRelay):
    """A hop entry is missing, is not under the hop root its token's owner signed, or names
    another relay than the one it was handed to (an entry added, altered or moved)."""


class UnregisteredHop(InvalidRelay):
    """A hop claim would pay a relay that has no registered identity (no stake)."""


class HopNotDelivered(InvalidRelay):
    """The hop claim's token is deeper than any receiver of the pool has claimed: nothing
    it credits is proven delivered yet."""


class HopAlreadyPaid(InvalidRelay):
    """The hop claim credits its relay no more than the pool already paid it."""


class PoolOverdrawn(InvalidRelay):
    """Paying the hop claim would pay the pool's relays more than the depth its receivers
    claimed is worth (a sender that credited more units than it revealed)."""


class PoolHopsFull(InvalidRelay):
    """The pool already pays as many different relays as a pool may pay (a sender that
    credited more relays than that: the refused relay's entry proves it)."""


class ClaimSignatureInvalid(InvalidRelay):
    """The transit claim is not signed by the receiver key it names."""


class ReceiptInvalid(InvalidRelay):
    """The claim's receipt does not hash to the datagram digest its token pays for: the
    claimant never opened the datagram, so it proves no delivery."""


class TokenSignersDiffer(InvalidRelay):
    """A fraud proof's tokens are signed by different keys: it proves nothing against either."""


class NotHopEquivocation(InvalidRelay):
    """The two tokens of a hop-equivocation proof do not conflict: another pool or another
    depth (an honest sender signs one token per depth), or the very same token."""


class NotOvercredit(InvalidRelay):
    """The hop entries of an overcredit proof credit no more than the units their deepest
    token reveals nor more relays than a pool pays, or are not one entry per relay of one
    pool."""


class HopFraudAlreadyReported(InvalidRelay):
    """That pool owner's fraud on that pool was already proven and punished."""


class HopBeneficiaryNotCredited(InvalidRelay):
    """A hop-fraud report names a beneficiary the proof does not show credited: no entry of
    the proof (an overcredit's), or no entry with its Merkle path under either token's hop
    root (an equivocation's), credits it more than nothing."""


# --- datagrams: sealed boxes and onion layers -------------------------------------------


class InvalidDatagram(GridnetError):
    """A datagram a relay or receiver got breaks a rule; subclasses name the rule."""


class SealedBoxError(InvalidDatagram):
    """A sealed box does not open with this key: altered, truncated, or sealed to another
    key (libsodium's authentication failed); or a peer link's frame does not open (Noise's
    authentication failed: altered, replayed, reordered or cut)."""


class OnionTampered(SealedBoxError):
    """An onion layer does not open with this hop's key: a byte of it was altered, it was
    cut short or extended, or it is another hop's layer."""


class UnregisteredOriginator(InvalidDatagram):
    """The datagram's originator has no identity registered on chain: no stake, no relay."""


class IdentityStakeMismatch(InvalidDatagram):
    """The identity proof a datagram carries is not the one registered for its originator."""


class FlaggedOriginator(InvalidDatagram):
    """An authority this relay trusts flagged the datagram's originator."""


class TokenReplayed(InvalidDatagram):
    """A token at a depth this relay already carried, or at or below the depth the pool
    already paid (or forgot), for that pool."""


class PoolExpiring(InvalidDatagram):
    """The datagram's pool has expired, or expires before the claims that would pay for
    carrying it can be mined (``relay.datagram.POOL_EXPIRY_MARGIN`` blocks): no relay carries
    what it cannot be paid for, and its sender must pay from a new pool."""


class TokenNotForDatagram(InvalidDatagram):
    """The token pays for another datagram than the one delivered."""


class UnknownNextHop(InvalidDatagram):
    """The onion names a next hop that is no known participant."""


class UnregisteredNextHop(InvalidDatagram):
    """The onion names a next hop without a registered identity: a relay never extends a
    path to a key that has no stake."""


class CarrierFull(InvalidDatagram):
    """A relay already holds as many datagrams for absent hops as it can carry."""


class OnionTooLarge(InvalidDatagram):
    """An onion or an onion's payload longer than the limit (``relay.onion.MAX_ONION_BYTES``
    and ``MAX_PAYLOAD_BYTES``)."""


class InvalidBoxKey(GridnetError):
    """A public key that cannot receive sealed boxes: not 32 bytes, or not a valid
    Ed25519 point (a small-order or non-canonical encoding)."""


class InvalidOnionPath(GridnetError):
    """An onion cannot be built for this path: an address that is not its key's address."""


class OnionPathTooLong(InvalidOnionPath):
    """More relays than an onion may have (``relay.onion.MAX_ONION_HOPS``)."""


class TooManyHops(InvalidOnionPath):
    """A connection would credit more different relays than its hop entries may hold
    (``relay.hops.MAX_CONNECTION_HOPS``): a new pool starts a new connection."""


# --- blocks -----------------------------------------------------------------------------


class InvalidBlock(GridnetError):
    """A block breaks a rule; subclasses name the rule."""


class UnknownParent(InvalidBlock):
    """The block's previous hash is not a block we know."""


class BadHeight(InvalidBlock):
    """The height is not the parent's height plus one."""


class BadVersion(InvalidBlock):
    """The header version is not one this node validates."""


class BadProofOfWork(InvalidBlock):
    """The header hash is not below the header's target."""


class WrongTarget(InvalidBlock):
    """The header's target is not the one the retarget rule gives."""


class TimestampTooOld(InvalidBlock):
    """The timestamp is not after the median of the previous blocks."""


class TimestampTooFarInFuture(InvalidBlock):
    """The timestamp is further ahead of the local clock than allowed."""


class BlockTooLarge(InvalidBlock):
    """The encoded block exceeds the chain's maximum block size."""


class BadMerkleRoot(InvalidBlock):
    """The header's transaction root does not match the transactions."""


class BadStateRoot(InvalidBlock):
    """The header's state root does not match the state after the block."""


class MissingCoinbase(InvalidBlock):
    """The block does not start with exactly one coinbase."""


class WrongReward(InvalidBlock):
    """The coinbase claims another amount than reward schedule plus fees."""


class DuplicateTransaction(InvalidBlock):
    """The same transaction appears twice in a block."""


class HashMismatch(InvalidBlock):
    """A stored block's header does not hash to the hash it is stored under."""


class MissingBlock(InvalidBlock):
    """The main-chain index names a block the store does not hold, or skips a height."""


class StateMismatch(InvalidBlock):
    """The stored state differs from the state a replay from genesis gives."""


class SupplyMismatch(InvalidBlock):
    """The replayed state holds more or less coin than the chain created (allocations and
    block rewards) less what its rules destroyed: a rule made or lost coin."""


class IndexMismatch(InvalidBlock):
    """A main-chain block's rows in the store's indexes do not match the block: the height its
    row is stored at, its count of signed transactions, or an invalid mark."""


class KnownInvalid(InvalidBlock):
    """The block, or one of its ancestors, was already found invalid."""


class BlockTransactionInvalid(InvalidBlock):
    """A transaction inside the block is invalid; wraps the transaction error."""

    def __init__(self, index: int, error: InvalidTransaction) -> None:
        super().__init__(f"transaction {index}: {error}")
        self.index = index
        self.error = error

    @property
    def rule(self) -> str:
        return self.error.rule


class OffSlot(InvalidBlock):
    """A permissioned block's timestamp is not the start of a slot after its parent's."""


class BadSeal(InvalidBlock):
    """A permissioned block's seal does not verify for the key it names, it pays another
    address, or it carries proof-of-work fields."""


class WrongProposer(InvalidBlock):
    """A permissioned block sealed by another validator than the one its slot belongs to."""


class BadJustification(InvalidBlock):
    """A permissioned header names another justified slot than its votes give (or one before
    its parent's, or not before its own)."""


class ConflictsWithFinal(InvalidBlock):
    """A block on a branch that leaves the main chain below its last final block."""


class BlockVoteInvalid(InvalidBlock):
    """A finality vote inside the block is invalid; wraps the vote error."""

    def __init__(self, index: int, error: InvalidVote) -> None:
        super().__init__(f"vote {index}: {error}")
        self.index = index
        self.error = error

    @property
    def rule(self) -> str:
        return self.error.rule


class InvalidVote(GridnetError):
    """A finality vote breaks a rule; subclasses name it."""


class NotAValidator(InvalidVote):
    """A vote by a key that is not in the validator set."""


class BadVoteSignature(InvalidVote):
    """A vote's signature does not verify for its key on this chain."""


class StaleVoteSource(InvalidVote):
    """A vote whose source is not the branch's justified checkpoint."""


class WrongVoteTarget(InvalidVote):
    """A vote whose target is not a block of the branch in a slot after its source's, before
    the block's and within the vote window (``poa.VOTE_WINDOW`` slots)."""


class VoteBeforeMembership(InvalidVote):
    """A vote for a target in a slot before its key's membership (``poa.member_since``): a
    fault of such a vote could not be proven (``FaultBeforeMembership``), so it does not count."""


class VoteAlreadyCounted(InvalidVote):
    """A second vote of one validator for one target slot."""


class VoteRefused(GridnetError):
    """A vote whose signature verifies that a node neither keeps nor relays (it cannot count
    in a block the node seals soon); not a fault of the peer that sent it."""


class VoteTooLate(VoteRefused):
    """A vote whose target is in the slot of this node's justified checkpoint or before."""


class VoteTargetAhead(VoteRefused):
    """A vote whose target is not on this node's main chain and in a slot that starts more than
    the slot lead after its clock (a vote for a block not yet here is held aside only while the
    node would take that block)."""


# --- peer links --------------------------------------------------------------------------------


class InvalidMessage(GridnetError):
    """A peer broke the link protocol; subclasses name the rule. The peer is disconnected."""


class HandshakeFailed(InvalidMessage):
    """The peer's hello is malformed or of another protocol version, a Noise handshake
    message does not authenticate, or its node key did not sign the handshake."""


class HandshakeTimeout(InvalidMessage):
    """The peer did not complete the handshake in time."""


class TooManyHandshakes(InvalidMessage):
    """Too many connections are in their handshake at once: the oldest of the host holding the
    most of them is closed to make room for a new one."""


class TooManyPeers(InvalidMessage):
    """As many peers as allowed have dialled this node and are linked: one more is closed
    before its handshake."""


class FrameTimeout(InvalidMessage):
    """A frame whose length was announced did not arrive whole in time."""


class LinkIdle(GridnetError):
    """A linked peer sent nothing (no whole frame: no status, no message) for the link's idle
    timeout, while an honest node sends its status every few seconds: the link is closed (not
    a fault, and the peer is not refused: a peer that crashed, or whose network went, leaves
    such a link)."""


class SendBufferFull(InvalidMessage):
    """A peer does not read what is sent to it: more bytes wait for it than allowed."""


class WrongChain(InvalidMessage):
    """The peer follows another chain (another genesis)."""


class Banned(InvalidMessage):
    """The peer is cut off here for a while (it broke the rules on an earlier link)."""


class FrameTooLarge(InvalidMessage):
    """A frame longer than the protocol allows."""


# --- serving peers: what a node does not answer ----------------------------------------------


class ServeRefused(GridnetError):
    """A node does not answer a peer's request for blocks or headers (``node/serving.py``);
    subclasses name the rule. Not a fault (an honest peer may meet it)."""


class ServeQueueFull(ServeRefused):
    """The requests of the peer's host waiting for the host's serving budget (and its debt)
    take as long as a request may wait at the host's rate: one more is not answered, and the
    asker is told it is busy (``BusyMsg``)."""

    def __init__(self, message: str, retry_after_ms: int = 0) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms
        """When the host's queue could take the request [ms from now]."""


class RequestExpired(ServeRefused):
    """A peer's request waited for its host's serving budget as long as a request timeout: it
    is dropped, not answered, and the asker is told it is busy (``BusyMsg``)."""


class RequestSuperseded(ServeRefused):
    """A peer asked for blocks or headers again before its waiting request was answered: the
    earlier request is dropped and the later one takes its place in its host's queue."""


# --- sync: what a node declines to spend effort on ----------------------------------------


class SyncDeclined(GridnetError):
    """A node declines to keep what a peer offers for sync; subclasses name the rule. Not a
    fault (an honest peer may offer it too): nothing of it is kept."""


class BelowMinChainWork(SyncDeclined):
    """A branch whose cumulative work stays below the chain's ``min_chain_work``: no header
    of it is kept, no block of it asked for or stored."""


class LighterBranch(SyncDeclined):
    """A branch with less work than our best known header (a side block: no more than our
    head): its headers are not kept, a side block's body is not stored."""


class PendingHeadersFull(SyncDeclined):
    """A peer holds as many checked headers awaiting their blocks as it may: the rest of its
    answer is asked for again once its blocks have made room."""


class PendingHeadersExpired(SyncDeclined):
    """No block of a peer's pending headers arrived for too long: they are dropped."""


class HeadersAhead(SyncDeclined):
    """Headers stamped further ahead of this node's clock than it takes (the peer's clock,
    or this one's, is off): those before them are kept, and they are asked for again once the
    clock has caught up. Not a fault: the same headers are valid a little later."""


class RequestUnanswered(SyncDeclined):
    """A peer left our request for headers or blocks unanswered for ``request_timeout_ms``
    (it may be asked again): the height it announced counts towards the sync target only as
    far as the headers it served back it, as any peer's."""


class PeerBusy(SyncDeclined):
    """A peer answered our request for headers or blocks that it is busy (``BusyMsg``: its
    serving budget for our host is taken). Not a fault, nor ``RequestUnanswered``: it is not
    asked again until a back-off has passed (doubling while it stays busy), and other peers
    are asked meanwhile."""


class NodeUnavailable(GridnetError):
    """A node process does not answer its HTTP API (it stopped, or never started)."""


class NodeFailed(GridnetError):
    """The node's own work failed on an error that waiting will not cure (a corrupt store,
    a bug): the process stops rather than serve a stale head. Also: a node process that a
    command started (``gridnet devnet``, a benchmark) exited, or did not come up."""


class WorkNotFound(GridnetError, RuntimeError):
    """No proof-of-work (a block's, an identity's) was found within the attempts allowed: the
    target is harder than this search could meet."""


class AuditFailed(GridnetError, RuntimeError):
    """The process that audits a run's chain beside it stopped on an error (its last line)."""


class PlotFailed(GridnetError):
    """A plot of a run could not be drawn (matplotlib refused what it was given, or its file
    could not be written): the run fails, incomplete (its results replace no earlier ones)."""


# --- mempool ----------------------------------------------------------------------------


class MempoolRejection(GridnetError):
    """The mempool refuses a transaction that is not itself invalid."""


class AlreadyKnown(MempoolRejection):
    """The transaction is already in the mempool."""


class MempoolFull(MempoolRejection):
    """The mempool is full (by count or by bytes) and the transaction pays less per byte than
    what it would have to evict, or is larger than the whole mempool."""


class ReplacementUnderpriced(MempoolRejection):
    """A pending transaction with the same sender and nonce pays a fee the new one does not
    exceed by enough: by 10% of it and by the minimum fee of the new one's size (what relaying
    it again costs) (``Mempool.replacement_fee``)."""


class TooManyReplacements(MempoolRejection):
    """The sender has replaced enough of its pending transactions since the node's last block:
    ``MAX_REPLACEMENTS`` of them, or replacements that set back, each by the sender's pending
    transactions after the one it replaces (the node applies them again after it), as many as
    the sender has pending. Admission only: after the next block it may replace again."""


class TooManyRebuilds(MempoolRejection):
    """The node built its state after the sender's pending transactions afresh on its head
    already, applying more than ``REBUILD_BYTES`` of them, and let it go since (it keeps a
    bounded number of such states: ``ledger/trial.py``): building it again for this
    transaction would apply more than ``REBUILD_BYTES`` of them again. Admission only: after
    the next block it is built again."""


class TooManyPending(MempoolRejection):
    """The sender already has the maximum number of pending transactions."""
