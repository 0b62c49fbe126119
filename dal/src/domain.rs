//! The domain's closed sets — statuses, roles, kinds, outcomes — as enums stored in text
//! columns. This module is the only place their text appears; everything else names
//! the variants. The order state machine is the transition table in [`OrderMove`].

use std::fmt;

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

/// A stored text that names no variant: a bug or a hand-edited row, never user input.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

/// An enum whose variants are stored as fixed texts (and shown to clients as the same
/// texts): `as_str`, `parse`, `ALL`, serde, and the conversions diesel's
/// `serialize_as`/`deserialize_as` need.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
            diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        // By hand: the derive does not see `serde(rename)` through this macro's literal
        // fragments and would document the variant names instead of the texts.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .description(Some(concat!("A ", $kind, ".")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                Self::parse(s).ok_or_else(|| UnknownValue { kind: $kind, value: s.to_string() })
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownValue;
            fn try_from(s: String) -> Result<Self, UnknownValue> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_string()
            }
        }

        impl<DB: Backend> FromSql<Text, DB> for $name
        where
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                Ok(String::from_sql(bytes)?.parse()?)
            }
        }

        impl<DB: Backend> ToSql<Text, DB> for $name
        where
            str: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                self.as_str().to_sql(out)
            }
        }
    };
}

text_enum!(
    /// What a user may do. Unknown stored roles are an error, never a silent default.
    Role, "role" {
        Customer = "customer",
        Runner = "runner",
        Admin = "admin",
    }
);

text_enum!(
    /// What an errand is about.
    OrderKind, "order kind" {
        Express = "express",
        Takeout = "takeout",
        Errand = "errand",
    }
);

text_enum!(
    /// Where an order is in its life. Moves between them are [`OrderMove`]s.
    OrderStatus, "order status" {
        Created = "created",
        Paid = "paid",
        Accepted = "accepted",
        PickedUp = "picked_up",
        Delivered = "delivered",
        Completed = "completed",
        Closed = "closed",
        Refunding = "refunding",
        Refunded = "refunded",
    }
);

text_enum!(
    /// A refund attempt: `requested` until WeChat accepts it, `processing` until its
    /// outcome is known. `failed` only once WeChat definitely did not pay it (its amount
    /// is released); `manual` when WeChat holds the money after a refund to a closed
    /// account (CHANGE): the amount stays reserved until someone settles it by hand.
    RefundStatus, "refund status" {
        Requested = "requested",
        Processing = "processing",
        Success = "success",
        Failed = "failed",
        Manual = "manual",
    }
);

text_enum!(
    /// Why a refund was made.
    RefundCause, "refund cause" {
        Cancel = "cancel",
        Admin = "admin",
        PaidAfterClose = "paid_after_close",
    }
);

text_enum!(
    /// Rows of the append-only payment ledger.
    LedgerEvent, "ledger event" {
        Paid = "paid",
        RefundRequested = "refund_requested",
        Refunded = "refunded",
        RefundFailed = "refund_failed",
    }
);

text_enum!(
    /// Who told us about a ledger event.
    LedgerSource, "ledger source" {
        Notify = "notify",
        OrderQuery = "orderquery",
        Api = "api",
        RefundCall = "refund",
        RefundNotify = "refund_notify",
        RefundQuery = "refundquery",
    }
);

text_enum!(
    /// Which WeChat Pay callback a raw notification came in on.
    CallbackKind, "callback kind" {
        Pay = "pay",
        Refund = "refund",
    }
);

text_enum!(
    /// What became of a WeChat Pay callback.
    CallbackOutcome, "callback outcome" {
        Paid = "paid",
        NotPaid = "not_paid",
        Duplicate = "duplicate",
        PaidAfterClose = "paid_after_close",
        UnknownOrder = "unknown_order",
        AmountMismatch = "amount_mismatch",
        Rejected = "rejected",
        UnknownRefund = "unknown_refund",
        Mismatch = "mismatch",
        Processing = "processing",
        Settled = "settled",
    }
);

text_enum!(
    /// A sending credit: one subscribe acceptance of a template, or a legacy form_id.
    CreditKind, "credit kind" {
        FormId = "form_id",
        Subscribe = "subscribe",
    }
);

text_enum!(
    /// The channel a message went out on.
    MessageChannel, "message channel" {
        Subscribe = "subscribe",
    }
);

text_enum!(
    /// What a checked text belongs to.
    ContentSubject, "content subject" {
        Order = "order",
        /// The user's own profile (the nickname).
        Profile = "profile",
        Draw = "draw",
        Expense = "expense",
    }
);

text_enum!(
    /// WeChat's verdict on a text (`msg_sec_check`'s `suggest`); `pending` until it answers.
    ContentVerdict, "content verdict" {
        Pending = "pending",
        Pass = "pass",
        Review = "review",
        Risky = "risky",
    }
);

text_enum!(
    /// What an uploaded image is for.
    UploadPurpose, "upload purpose" {
        Avatar = "avatar",
        /// The runner's proof of delivery, on one order.
        DeliveryPhoto = "delivery_photo",
    }
);

text_enum!(
    /// WeChat's verdict on an uploaded image (`media_check_async`'s `suggest`); `pending`
    /// until it arrives. Only `pass` is shown to others.
    MediaCheck, "media check" {
        Pending = "pending",
        Pass = "pass",
        Risky = "risky",
        Review = "review",
    }
);

text_enum!(
    /// What a message is about.
    MessageEvent, "message event" {
        Paid = "paid",
        Accepted = "accepted",
        Delivered = "delivered",
        Refunded = "refunded",
        Reminder = "reminder",
        /// To the runner: an admin put the order they held back in the pool.
        Reassigned = "reassigned",
        /// To every participant: a lucky draw's result.
        DrawResult = "draw_result",
    }
);

text_enum!(
    /// What became of one send.
    MessageOutcome, "message outcome" {
        Sent = "sent",
        NoCredit = "no_credit",
        /// WeChat's 43101: the user refused or has no acceptance left.
        Refused = "refused",
        UnknownUser = "unknown_user",
        Error = "error",
        /// Over the user's daily cap (`MESSAGES_PER_USER_DAY`, one reminder): not sent.
        Capped = "capped",
    }
);

text_enum!(
    /// How the official account's pushes must arrive (`WECHAT_MP_MODE`): plain only,
    /// plain or encrypted, or encrypted only (the signature then covers the body).
    MpMode, "official account mode" {
        Plain = "plain",
        Compatible = "compatible",
        Safe = "safe",
    }
);

text_enum!(
    /// Rows of a runner's earnings ledger: credits (+) and debits (-).
    EarningKind, "earning kind" {
        /// An order the runner delivered completed: goods plus the runner's share of the fee.
        OrderCompleted = "order_completed",
        /// A refund of a completed order took back the same share.
        RefundDebit = "refund_debit",
        /// Reserved for a withdrawal when it was asked for.
        Withdrawal = "withdrawal",
        /// A withdrawal failed or was rejected: its amount came back.
        WithdrawalReturned = "withdrawal_returned",
    }
);

text_enum!(
    /// An on/off setting.
    Switch, "switch" {
        On = "on",
        Off = "off",
    }
);

text_enum!(
    /// A console sign-in by scanning: waiting for an admin, approved (the token is handed
    /// over once), or gone.
    ConsoleSessionStatus, "console session status" {
        Pending = "pending",
        Approved = "approved",
        Expired = "expired",
    }
);

text_enum!(
    /// A withdrawal: `pending` until an admin approves it (manual mode), `processing` while
    /// the transfer's outcome is not known, then `succeeded` or `failed`.
    WithdrawalStatus, "withdrawal status" {
        Pending = "pending",
        Processing = "processing",
        Succeeded = "succeeded",
        Failed = "failed",
    }
);

text_enum!(
    /// The outcome of one day's bill reconciliation.
    ReconciliationStatus, "reconciliation status" {
        Matched = "matched",
        Mismatched = "mismatched",
        /// WeChat has no bill for the day (no trades): a result, not an error.
        NoBill = "no_bill",
    }
);

text_enum!(
    /// How a bill line and the local ledger disagree.
    MismatchKind, "mismatch kind" {
        /// In WeChat's bill, not here.
        MissingLocal = "missing_local",
        /// Here, not in WeChat's bill.
        MissingWechat = "missing_wechat",
        AmountDiffers = "amount_differs",
        StatusDiffers = "status_differs",
    }
);

text_enum!(
    /// The trade states a bill line can have (交易状态), as WeChat writes them.
    BillTradeState, "bill trade state" {
        Success = "SUCCESS",
        Refund = "REFUND",
        Revoked = "REVOKED",
    }
);

text_enum!(
    /// How withdrawals are approved (`WITHDRAW_APPROVAL`).
    WithdrawApproval, "withdraw approval" {
        /// An admin approves each withdrawal before it is paid.
        Manual = "manual",
        /// Paid at once.
        Auto = "auto",
    }
);

text_enum!(
    /// A coupon: claimable while `active`; `stopped` by an admin (claimed ones stay good).
    CouponStatus, "coupon status" {
        Active = "active",
        Stopped = "stopped",
    }
);

text_enum!(
    /// How a coupon takes money off: a fixed amount, or a percentage with a cap.
    DiscountKind, "discount kind" {
        Fixed = "fixed",
        Percent = "percent",
    }
);

text_enum!(
    /// A claimed coupon: `available` to use, `locked` by an unpaid order, `used` once
    /// that order is paid (a later refund does not give it back), `expired` unused.
    UserCouponStatus, "user coupon status" {
        Available = "available",
        Locked = "locked",
        Used = "used",
        Expired = "expired",
    }
);

text_enum!(
    /// A lucky draw: `open` for joins, `locked` from `lock_at` (no more joins or leaves;
    /// its seed is fixed), `drawn` with its winners, or `cancelled` while open.
    DrawStatus, "draw status" {
        Open = "open",
        Locked = "locked",
        Drawn = "drawn",
        Cancelled = "cancelled",
    }
);

text_enum!(
    /// A row of the expense ledger: an `expense` a member advanced, or the `reversal`
    /// that voids one (the ledger is append-only).
    ExpenseKind, "expense kind" {
        Expense = "expense",
        Reversal = "reversal",
    }
);

text_enum!(
    /// Where an expense was recorded.
    ExpenseSource, "expense source" {
        App = "app",
        OfficialAccount = "official_account",
    }
);

text_enum!(
    /// An official-account template message in the outbox: `pending` (waiting for its
    /// turn or a retry), `sending` (claimed by one sender), `sent`, `failed` for good
    /// (WeChat refused it: 43004 unsubscribed, 40003 bad openid, ...), or `gave_up`
    /// after the last retry.
    MpMessageStatus, "official-account message status" {
        Pending = "pending",
        Sending = "sending",
        Sent = "sent",
        Failed = "failed",
        GaveUp = "gave_up",
        /// The send may have reached WeChat (a timeout, a reset after sending, a sender
        /// that stopped mid-send): never sent again, since WeChat cannot say.
        Unclear = "unclear",
        /// Over the user's `MESSAGES_PER_USER_DAY` on the account: not sent.
        Capped = "capped",
    }
);

/// The order state machine: every move, the states it starts from and the state it
/// reaches. The dal's compare-and-set updates take their `WHERE status IN (..)` and
/// their new status from here, so no other code decides which moves exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderMove {
    /// A verified payment (notify or orderquery).
    Pay,
    /// Cancelled before payment, or past the pay deadline.
    Close,
    /// A runner takes it.
    Accept,
    PickUp,
    Deliver,
    /// The customer confirms, or the auto-complete job does.
    Complete,
    /// Cancelled after payment, or refunded in full before pickup.
    StartRefund,
    /// Everything reserved for refunds came back.
    FinishRefund,
    /// An admin takes an order from its runner and puts it back in the pool; the
    /// payment stays.
    Reassign,
}

use OrderStatus as S;

const TRANSITIONS: &[(OrderMove, &[OrderStatus], OrderStatus)] = &[
    (OrderMove::Pay, &[S::Created], S::Paid),
    (OrderMove::Close, &[S::Created], S::Closed),
    (OrderMove::Accept, &[S::Paid], S::Accepted),
    (OrderMove::PickUp, &[S::Accepted], S::PickedUp),
    (OrderMove::Deliver, &[S::PickedUp], S::Delivered),
    (OrderMove::Complete, &[S::Delivered], S::Completed),
    (
        OrderMove::StartRefund,
        &[S::Paid, S::Accepted],
        S::Refunding,
    ),
    (OrderMove::FinishRefund, &[S::Refunding], S::Refunded),
    (OrderMove::Reassign, &[S::Accepted, S::PickedUp], S::Paid),
];

impl OrderMove {
    pub const ALL: &'static [OrderMove] = &[
        OrderMove::Pay,
        OrderMove::Close,
        OrderMove::Accept,
        OrderMove::PickUp,
        OrderMove::Deliver,
        OrderMove::Complete,
        OrderMove::StartRefund,
        OrderMove::FinishRefund,
        OrderMove::Reassign,
    ];

    fn row(self) -> (&'static [OrderStatus], OrderStatus) {
        TRANSITIONS
            .iter()
            .find(|(m, _, _)| *m == self)
            .map(|(_, from, to)| (*from, *to))
            .unwrap_or((&[], S::Created))
    }

    /// The states this move may start from.
    pub fn from(self) -> &'static [OrderStatus] {
        self.row().0
    }

    /// The state this move reaches.
    pub fn to(self) -> OrderStatus {
        self.row().1
    }

    /// The verb for messages ("cannot accept an order that is closed").
    pub fn verb(self) -> &'static str {
        match self {
            OrderMove::Pay => "pay",
            OrderMove::Close => "close",
            OrderMove::Accept => "accept",
            OrderMove::PickUp => "pick up",
            OrderMove::Deliver => "deliver",
            OrderMove::Complete => "complete",
            OrderMove::StartRefund => "refund",
            OrderMove::FinishRefund => "finish refunding",
            OrderMove::Reassign => "reassign",
        }
    }
}

impl OrderStatus {
    /// The state `mv` leads to from here, if the table allows it.
    pub fn after(self, mv: OrderMove) -> Option<OrderStatus> {
        mv.from().contains(&self).then(|| mv.to())
    }

    /// Whether some move leads from this state to `to`.
    pub fn can_move_to(self, to: OrderStatus) -> bool {
        OrderMove::ALL.iter().any(|m| self.after(*m) == Some(to))
    }

    /// States in which money has been received and not all of it is back: a refund may
    /// be asked for.
    pub const HOLDING_PAYMENT: &'static [OrderStatus] = &[
        S::Paid,
        S::Accepted,
        S::PickedUp,
        S::Delivered,
        S::Completed,
        S::Refunding,
    ];

    pub fn holds_payment(self) -> bool {
        Self::HOLDING_PAYMENT.contains(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clients see the stored texts, in the JSON and in the OpenAPI document alike.
    #[test]
    fn documented_values_are_the_serialized_texts() {
        use utoipa::PartialSchema;
        fn check<T: serde::Serialize + PartialSchema + Copy>(
            all: &[T],
            text: fn(T) -> &'static str,
        ) {
            let schema = serde_json::to_value(T::schema()).expect("schema");
            let documented: Vec<&str> = schema["enum"]
                .as_array()
                .expect("enum")
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            let texts: Vec<&str> = all.iter().map(|v| text(*v)).collect();
            assert_eq!(documented, texts);
            for v in all {
                assert_eq!(serde_json::to_value(v).expect("json"), text(*v));
            }
        }
        check(Role::ALL, Role::as_str);
        check(OrderStatus::ALL, OrderStatus::as_str);
        check(RefundStatus::ALL, RefundStatus::as_str);
        check(OrderKind::ALL, OrderKind::as_str);
    }

    /// The contract's state diagram, written out by hand: every other pair is refused.
    const CONTRACT: &[(OrderStatus, OrderStatus)] = &[
        (S::Created, S::Paid),
        (S::Created, S::Closed),
        (S::Paid, S::Accepted),
        (S::Accepted, S::PickedUp),
        (S::PickedUp, S::Delivered),
        (S::Delivered, S::Completed),
        (S::Paid, S::Refunding),
        (S::Accepted, S::Refunding),
        (S::Refunding, S::Refunded),
        // An admin puts a held order back in the pool.
        (S::Accepted, S::Paid),
        (S::PickedUp, S::Paid),
    ];

    #[test]
    fn every_pair_of_states_is_allowed_exactly_when_the_contract_says() {
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(
                    from.can_move_to(*to),
                    CONTRACT.contains(&(*from, *to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn every_move_from_every_state() {
        for mv in OrderMove::ALL {
            assert!(!mv.from().is_empty(), "{mv:?} is in the table");
            for from in OrderStatus::ALL {
                let expected = CONTRACT
                    .iter()
                    .any(|(f, t)| f == from && *t == mv.to() && mv.from().contains(f));
                assert_eq!(from.after(*mv).is_some(), expected, "{from} {mv:?}");
            }
        }
        // Each move has one row.
        for mv in OrderMove::ALL {
            assert_eq!(TRANSITIONS.iter().filter(|(m, _, _)| m == mv).count(), 1);
        }
    }

    #[test]
    fn texts_round_trip_and_unknown_texts_are_errors() {
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>().ok(), Some(*s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        for r in Role::ALL {
            assert_eq!(Role::try_from(r.as_str().to_string()).ok(), Some(*r));
        }
        assert!("superuser".parse::<Role>().is_err());
        assert!(Role::parse("Admin").is_none(), "case matters");
    }
}
