//! What a coupon takes off an order, and whether it applies at all. Pure functions: the
//! order's creation transaction calls them on rows it read under the user's lock.

use chrono::NaiveDateTime;

use campus_dal::coupons::{Coupon, UserCoupon};
use campus_dal::{DiscountKind, OrderKind, UserCouponStatus, UserId};

use crate::text::InvalidInput;

/// Why a coupon cannot go on an order (422 `coupon_not_applicable`).
#[derive(Debug, thiserror::Error)]
#[error("coupon not applicable: {0}")]
pub struct NotApplicable(pub &'static str);

/// The order kinds a coupon is limited to, from its stored list (`None`: every kind).
pub(crate) fn parse_kinds(stored: Option<&str>) -> Result<Option<Vec<OrderKind>>, InvalidInput> {
    let Some(s) = stored else {
        return Ok(None);
    };
    s.split(',')
        .filter(|k| !k.is_empty())
        .map(|k| {
            OrderKind::parse(k).ok_or_else(|| InvalidInput(format!("unknown order kind {k:?}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The stored form of a kind list.
pub(crate) fn store_kinds(kinds: &[OrderKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The discount on an order of `gross` fen (fee + goods): the fixed amount, or the
/// percentage rounded down and capped; never so much that less than 1 fen is left to pay.
pub fn discount_fen(coupon: &Coupon, gross: i64) -> i64 {
    let raw = match coupon.discount_kind {
        DiscountKind::Fixed => coupon.discount_fen.unwrap_or(0),
        DiscountKind::Percent => {
            let pct = i64::from(coupon.percent_off.unwrap_or(0));
            let off = gross.saturating_mul(pct) / 100;
            coupon.max_discount_fen.map_or(off, |cap| off.min(cap))
        }
    };
    raw.clamp(0, (gross - 1).max(0))
}

/// The discount `claim` gives an order of `kind` and `gross` fen made by `user` at
/// `now`, or why it does not apply.
pub fn applicable(
    claim: &UserCoupon,
    coupon: &Coupon,
    user: UserId,
    kind: OrderKind,
    gross: i64,
    now: NaiveDateTime,
) -> Result<i64, NotApplicable> {
    if claim.user_id != user {
        return Err(NotApplicable("not your coupon"));
    }
    if claim.status != UserCouponStatus::Available {
        return Err(NotApplicable("the coupon is not available"));
    }
    if claim.expires_at <= now {
        return Err(NotApplicable("the coupon has expired"));
    }
    if gross < coupon.min_amount_fen {
        return Err(NotApplicable(
            "the order is below the coupon's minimum amount",
        ));
    }
    let kinds =
        parse_kinds(coupon.kinds.as_deref()).map_err(|_| NotApplicable("unreadable coupon"))?;
    if let Some(kinds) = kinds
        && !kinds.contains(&kind)
    {
        return Err(NotApplicable(
            "the coupon does not apply to this kind of order",
        ));
    }
    Ok(discount_fen(coupon, gross))
}

#[cfg(test)]
mod tests {
    use super::*;
    use campus_dal::{CouponId, CouponStatus, UserCouponId};

    fn coupon(kind: DiscountKind, fen: Option<i64>, pct: Option<i32>, cap: Option<i64>) -> Coupon {
        let t = campus_dal::time::now();
        Coupon {
            id: CouponId(1),
            title: "t".into(),
            discount_kind: kind,
            discount_fen: fen,
            percent_off: pct,
            max_discount_fen: cap,
            min_amount_fen: 0,
            stock: 1,
            stock_shards: 1,
            per_user_limit: 1,
            valid_days: Some(1),
            valid_until: None,
            kinds: Some("express,errand".into()),
            keyword: None,
            status: CouponStatus::Active,
            created_by: UserId(1),
            created_at: t,
            updated_at: t,
            stopped_at: None,
        }
    }

    #[test]
    fn fixed_percent_cap_and_one_fen_left() {
        let fixed = coupon(DiscountKind::Fixed, Some(300), None, None);
        assert_eq!(discount_fen(&fixed, 1000), 300);
        assert_eq!(discount_fen(&fixed, 300), 299, "at least 1 fen is paid");
        assert_eq!(discount_fen(&fixed, 1), 0);
        let pct = coupon(DiscountKind::Percent, None, Some(15), Some(100));
        assert_eq!(discount_fen(&pct, 333), 49, "rounded down");
        assert_eq!(discount_fen(&pct, 10_000), 100, "capped");
        let all = coupon(DiscountKind::Percent, None, Some(100), Some(1000));
        assert_eq!(discount_fen(&all, 500), 499);
    }

    #[test]
    fn applicability() {
        let now = campus_dal::time::now();
        let c = coupon(DiscountKind::Fixed, Some(100), None, None);
        let claim = UserCoupon {
            id: UserCouponId(1),
            coupon_id: c.id,
            user_id: UserId(7),
            seq: 1,
            status: UserCouponStatus::Available,
            order_id: None,
            claimed_at: now,
            expires_at: now + chrono::Duration::hours(1),
            locked_at: None,
            used_at: None,
            updated_at: now,
        };
        assert_eq!(
            applicable(&claim, &c, UserId(7), OrderKind::Express, 500, now).ok(),
            Some(100)
        );
        assert!(applicable(&claim, &c, UserId(8), OrderKind::Express, 500, now).is_err());
        assert!(applicable(&claim, &c, UserId(7), OrderKind::Takeout, 500, now).is_err());
        let later = now + chrono::Duration::hours(2);
        assert!(applicable(&claim, &c, UserId(7), OrderKind::Express, 500, later).is_err());
        assert_eq!(
            parse_kinds(Some(&store_kinds(&[OrderKind::Takeout]))).ok(),
            Some(Some(vec![OrderKind::Takeout]))
        );
    }
}
