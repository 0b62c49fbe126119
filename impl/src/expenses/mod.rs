//! Team expenses: members of a group record what they advanced for the team (in the
//! mini-program or by typing to the official account), leaders see their group, admins
//! (the center) see everything and pay a group's quarter back in one step.
//!
//! The ledger is append-only: an expense is voided by a reversing row (the negated
//! amount, `reverses_id` unique so a row is voided once), never deleted or re-priced.
//! A void and a reimbursement of the same group serialize on the group's row lock, so a
//! reimbursed expense is never voided and a void is never half-paid.

pub mod money;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use campus_dal::expenses::{
    self as q, Expense, Group, NewExpense, NewGroup, NewMember, NewReimbursement, Reimbursement,
    Sums, Whose,
};
use campus_dal::time::{self, to_utc};
use campus_dal::{
    ContentSubject, ExpenseId, ExpenseKind, ExpenseSource, GroupId, ReimbursementId, UserId,
};

use crate::content_check::{ContentChecks, ContentRejected, Findings};
use crate::db::{Db, DbError};
pub use crate::idempotency::Made;
use crate::idempotency::{self, Fingerprint};
use crate::orders::Page;
use crate::text::{InvalidInput, TextRule, id_cursor, into_page, page_limit};
use crate::users::{CurrentUser, Forbidden, Role};
use money::{Quarter, beijing_day, beijing_today, check_fen, csv_text, parse_day, yuan};

const GROUP_NAME: TextRule = TextRule::line("name", 32).required();
const WHAT: TextRule = TextRule::line("what", 64).required();

/// The expenses service.
#[derive(Clone)]
pub struct Expenses {
    db: Db,
    /// WeChat's check of descriptions; `None`: not checked.
    content: Option<ContentChecks>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExpenseError {
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    ContentRejected(#[from] ContentRejected),
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("you are not a member of an expense group")]
    NotMember,
    #[error("only this group's leaders and admins may see it")]
    NotLeader,
    #[error("a group with this name exists")]
    GroupNameTaken,
    #[error("this user is already in another group")]
    AlreadyInGroup,
    #[error("this expense was already voided")]
    AlreadyVoided,
    #[error("this expense was already reimbursed and cannot be voided")]
    AlreadyReimbursed,
    #[error("an expense can be voided by its author on the day it was recorded; ask an admin")]
    VoidWindowPassed,
    #[error("nothing of this group's quarter is waiting to be reimbursed")]
    NothingToReimburse,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyConflict,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// `POST /admin/groups`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// 1 to 32 characters, unique.
    pub name: String,
}

/// `POST /admin/groups/{id}/members`: adds a user, or changes their `leader` flag when
/// they are in this group already.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    #[serde(default)]
    pub leader: bool,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MemberView {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    pub nickname: Option<String>,
    pub leader: bool,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GroupView {
    #[schema(value_type = i64)]
    pub id: GroupId,
    pub name: String,
    pub members: Vec<MemberView>,
    pub created_at: DateTime<Utc>,
}

/// `GET /groups/mine`: the caller's group and whether they lead it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MyGroupView {
    #[serde(flatten)]
    pub group: GroupView,
    pub leader: bool,
}

/// `POST /expenses`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExpense {
    /// Positive, at most 10000000 (100,000 yuan).
    pub amount_fen: i64,
    /// What was bought, 1 to 64 characters.
    pub what: String,
    /// The Beijing day of the spending, `YYYY-MM-DD`, not in the future.
    pub spent_on: String,
}

/// One ledger row.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ExpenseView {
    #[schema(value_type = i64)]
    pub id: ExpenseId,
    #[schema(value_type = i64)]
    pub group_id: GroupId,
    /// The member who advanced the money.
    #[schema(value_type = i64)]
    pub user_id: UserId,
    pub kind: ExpenseKind,
    /// Negative on a reversal.
    pub amount_fen: i64,
    pub what: String,
    pub spent_on: String,
    pub quarter: String,
    /// On a reversal: the expense it voids.
    #[schema(value_type = Option<i64>)]
    pub reverses_id: Option<ExpenseId>,
    /// On a voided expense: its reversal.
    #[schema(value_type = Option<i64>)]
    pub voided_by_id: Option<ExpenseId>,
    pub source: ExpenseSource,
    /// Who wrote the row (the member, or the admin who voided it).
    #[schema(value_type = i64)]
    pub recorded_by: UserId,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Option<i64>)]
    pub reimbursement_id: Option<ReimbursementId>,
    pub reimbursed_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<i64>)]
    pub reimbursed_by: Option<UserId>,
}

/// What a list or a summary covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Me,
    Group,
    Center,
}

/// `GET /expenses`.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExpenseListQuery {
    /// `me` (default) or `group` (leaders and admins).
    pub scope: Option<Scope>,
    /// With `scope=group`: which group (admins; leaders may name their own). Default: the caller's.
    pub group_id: Option<i64>,
    /// `2026Q4`; default: every quarter.
    pub quarter: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// `GET /expenses/summary`.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// `me` (default), `group` (leaders and admins) or `center` (admins).
    pub scope: Option<Scope>,
    /// With `scope=group`: which group (admins; leaders may name their own). Default: the caller's.
    pub group_id: Option<i64>,
    /// `2026Q4`; default: the current quarter (Beijing time).
    pub quarter: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MemberSums {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    pub nickname: Option<String>,
    pub total_fen: i64,
    pub unreimbursed_fen: i64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GroupSums {
    #[schema(value_type = i64)]
    pub group_id: GroupId,
    pub name: String,
    pub total_fen: i64,
    pub unreimbursed_fen: i64,
}

/// A quarter's sums: reversals count with their negative amounts, so a voided expense
/// adds nothing.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Summary {
    pub quarter: String,
    pub scope: Scope,
    pub total_fen: i64,
    pub unreimbursed_fen: i64,
    pub by_member: Vec<MemberSums>,
    pub by_group: Vec<GroupSums>,
}

/// `POST /admin/reimbursements`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reimburse {
    #[schema(value_type = i64)]
    pub group_id: GroupId,
    /// `2026Q4`.
    pub quarter: String,
}

/// One batch paid back.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReimbursementView {
    #[schema(value_type = i64)]
    pub id: ReimbursementId,
    #[schema(value_type = i64)]
    pub group_id: GroupId,
    pub quarter: String,
    /// The sum paid back (expenses less their reversals).
    pub total_fen: i64,
    /// Rows it covers, reversals included.
    pub expense_count: i64,
    #[schema(value_type = i64)]
    pub reimbursed_by: UserId,
    pub reimbursed_at: DateTime<Utc>,
}

impl ReimbursementView {
    fn of(r: &Reimbursement) -> Self {
        Self {
            id: r.id,
            group_id: r.group_id,
            quarter: r.quarter.clone(),
            total_fen: r.total_fen,
            expense_count: r.expense_count,
            reimbursed_by: r.reimbursed_by,
            reimbursed_at: to_utc(r.reimbursed_at),
        }
    }
}

/// The CSV report of a quarter.
pub struct Report {
    pub filename: String,
    pub bytes: Vec<u8>,
}

/// Rows as views, with their voids and reimbursements looked up.
fn views(c: &mut campus_dal::Conn, rows: &[Expense]) -> Result<Vec<ExpenseView>, ExpenseError> {
    let ids: Vec<ExpenseId> = rows.iter().map(|r| r.id).collect();
    let voids = q::reversals_among(c, &ids)?;
    let rids: Vec<ReimbursementId> = rows.iter().filter_map(|r| r.reimbursement_id).collect();
    let paid = if rids.is_empty() {
        Vec::new()
    } else {
        q::reimbursements_among(c, &rids)?
    };
    Ok(rows
        .iter()
        .map(|e| {
            let r = e
                .reimbursement_id
                .and_then(|id| paid.iter().find(|p| p.id == id));
            ExpenseView {
                id: e.id,
                group_id: e.group_id,
                user_id: e.user_id,
                kind: e.kind,
                amount_fen: e.amount_fen,
                what: e.what.clone(),
                spent_on: e.spent_on.clone(),
                quarter: e.quarter.clone(),
                reverses_id: e.reverses_id,
                voided_by_id: voids.iter().find(|(o, _)| *o == e.id).map(|(_, r)| *r),
                source: e.source,
                recorded_by: e.recorded_by,
                created_at: to_utc(e.created_at),
                reimbursement_id: e.reimbursement_id,
                reimbursed_at: r.map(|r| to_utc(r.reimbursed_at)),
                reimbursed_by: r.map(|r| r.reimbursed_by),
            }
        })
        .collect())
}

fn group_view(c: &mut campus_dal::Conn, g: &Group) -> Result<GroupView, ExpenseError> {
    let members = q::members(c, g.id)?
        .into_iter()
        .map(|(m, nickname)| MemberView {
            user_id: m.user_id,
            nickname,
            leader: m.leader,
        })
        .collect();
    Ok(GroupView {
        id: g.id,
        name: g.name.clone(),
        members,
        created_at: to_utc(g.created_at),
    })
}

/// Which group a `scope=group` request reads: the caller's own when they lead it, any
/// when they are an admin. A leader naming another group is refused.
fn readable_group(
    c: &mut campus_dal::Conn,
    caller: &CurrentUser,
    asked: Option<i64>,
) -> Result<GroupId, ExpenseError> {
    let mine = q::membership(c, caller.id)?;
    if caller.role == Role::Admin {
        return match (asked, mine) {
            (Some(g), _) => {
                let g = GroupId(g);
                q::find_group(c, g)?.ok_or(ExpenseError::NotFound)?;
                Ok(g)
            }
            (None, Some(m)) => Ok(m.group_id),
            (None, None) => Err(InvalidInput::new("group_id is required").into()),
        };
    }
    match mine {
        Some(m) if m.leader && asked.is_none_or(|g| g == m.group_id.0) => Ok(m.group_id),
        Some(_) => Err(ExpenseError::NotLeader),
        None => Err(ExpenseError::NotMember),
    }
}

impl Expenses {
    pub fn new(db: Db) -> Self {
        Self { db, content: None }
    }

    /// Descriptions pass WeChat's content check.
    pub fn with_content_checks(mut self, content: ContentChecks) -> Self {
        self.content = Some(content);
        self
    }

    /// `POST /admin/groups`.
    pub async fn create_group(
        &self,
        caller: &CurrentUser,
        req: CreateGroup,
    ) -> Result<GroupView, ExpenseError> {
        caller.require(Role::Admin)?;
        let name = GROUP_NAME.clean(&req.name)?;
        let admin = caller.id;
        self.db
            .write_tx(move |c| -> Result<GroupView, ExpenseError> {
                let g = match q::insert_group(
                    c,
                    &NewGroup {
                        name: &name,
                        created_by: admin,
                        created_at: time::now(),
                    },
                ) {
                    Ok(g) => g,
                    Err(e) if campus_dal::is_unique_violation(&e) => {
                        return Err(ExpenseError::GroupNameTaken);
                    }
                    Err(e) => return Err(e.into()),
                };
                group_view(c, &g)
            })
            .await
    }

    /// `POST /admin/groups/{id}/members`: a user joins the group (or, already in it, has
    /// their `leader` flag set). A user is in one group at most.
    pub async fn add_member(
        &self,
        caller: &CurrentUser,
        group: GroupId,
        req: AddMember,
    ) -> Result<GroupView, ExpenseError> {
        caller.require(Role::Admin)?;
        let admin = caller.id;
        self.db
            .write_tx(move |c| -> Result<GroupView, ExpenseError> {
                if !q::lock_group(c, group)? {
                    return Err(ExpenseError::NotFound);
                }
                let g = q::find_group(c, group)?.ok_or(ExpenseError::NotFound)?;
                campus_dal::users::find(c, req.user_id)?
                    .ok_or_else(|| InvalidInput::new("no such user_id"))?;
                let now = time::now();
                match q::membership(c, req.user_id)? {
                    Some(m) if m.group_id == group => {
                        q::set_leader(c, req.user_id, group, req.leader, now)?;
                    }
                    Some(_) => return Err(ExpenseError::AlreadyInGroup),
                    None => {
                        let r = q::insert_member(
                            c,
                            &NewMember {
                                user_id: req.user_id,
                                group_id: group,
                                leader: req.leader,
                                added_by: admin,
                                added_at: now,
                                updated_at: now,
                            },
                        );
                        match r {
                            Ok(_) => {}
                            Err(e) if campus_dal::is_unique_violation(&e) => {
                                return Err(ExpenseError::AlreadyInGroup);
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                group_view(c, &g)
            })
            .await
    }

    /// `GET /admin/groups`: every group with its members.
    pub async fn groups(&self, caller: &CurrentUser) -> Result<Vec<GroupView>, ExpenseError> {
        caller.require(Role::Admin)?;
        self.db
            .read(|c| -> Result<Vec<GroupView>, ExpenseError> {
                let groups = q::all_groups(c)?;
                groups.iter().map(|g| group_view(c, g)).collect()
            })
            .await
    }

    /// `GET /groups/mine`.
    pub async fn my_group(&self, caller: &CurrentUser) -> Result<MyGroupView, ExpenseError> {
        let uid = caller.id;
        self.db
            .read(move |c| -> Result<MyGroupView, ExpenseError> {
                let m = q::membership(c, uid)?.ok_or(ExpenseError::NotMember)?;
                let g = q::find_group(c, m.group_id)?.ok_or(ExpenseError::NotFound)?;
                Ok(MyGroupView {
                    group: group_view(c, &g)?,
                    leader: m.leader,
                })
            })
            .await
    }

    /// `POST /expenses` (and the official account's `expense` command): the caller, a
    /// group member, records what they advanced.
    pub async fn record(
        &self,
        caller: &CurrentUser,
        req: CreateExpense,
        source: ExpenseSource,
        idempotency_key: Option<String>,
    ) -> Result<Made<ExpenseView>, ExpenseError> {
        let key = idempotency::Key::parse(idempotency_key)?;
        let amount = check_fen(req.amount_fen)?;
        let what = WHAT.clean(&req.what)?;
        let day = parse_day(&req.spent_on)?;
        let findings = match &self.content {
            Some(cc) => cc.check(caller, 2, &[("what", &what)]).await?,
            None => Findings::default(),
        };
        let fingerprint = Fingerprint::of("POST /expenses", &req);
        let uid = caller.id;
        self.db
            .write_tx(move |c| -> Result<Made<ExpenseView>, ExpenseError> {
                // First: a repeated key is answered once, whichever instance serves it.
                campus_dal::users::lock(c, uid)?;
                if let Some(prev) = idempotency::earlier_id(c, uid, key.as_ref(), &fingerprint)? {
                    let e = q::find(c, ExpenseId(prev))?.ok_or(ExpenseError::NotFound)?;
                    let view = views(c, &[e])?.remove(0);
                    return Ok(Made {
                        view,
                        replayed: true,
                    });
                }
                let m = q::membership(c, uid)?.ok_or(ExpenseError::NotMember)?;
                let spent_on = day.format("%Y-%m-%d").to_string();
                let quarter = Quarter::of(day).to_string();
                let e = q::insert(
                    c,
                    &NewExpense {
                        group_id: m.group_id,
                        user_id: uid,
                        kind: ExpenseKind::Expense,
                        amount_fen: amount,
                        what: &what,
                        spent_on: &spent_on,
                        quarter: &quarter,
                        reverses_id: None,
                        source,
                        recorded_by: uid,
                        created_at: time::now(),
                    },
                )?;
                findings.record(c, uid, ContentSubject::Expense, e.id.0)?;
                idempotency::remember(
                    c,
                    uid,
                    key.as_ref(),
                    &fingerprint,
                    201,
                    &e.id.to_string(),
                    time::now(),
                )?;
                let view = views(c, &[e])?.remove(0);
                Ok(Made {
                    view,
                    replayed: false,
                })
            })
            .await
    }

    /// `POST /expenses/{id}/void`: its author on the day it was recorded (Beijing), or an
    /// admin, appends the reversing row. Someone else's expense is 404 (a leader who can
    /// see it gets 403).
    pub async fn void(
        &self,
        caller: &CurrentUser,
        id: ExpenseId,
    ) -> Result<ExpenseView, ExpenseError> {
        let found = self
            .db
            .read(move |c| q::find(c, id).map_err(ExpenseError::from))
            .await?
            .ok_or(ExpenseError::NotFound)?;
        let (uid, admin) = (caller.id, caller.role == Role::Admin);
        self.db
            .write_tx(move |c| -> Result<ExpenseView, ExpenseError> {
                // First statement: the group's lock (a reimbursement takes it too); the
                // row is read again under it.
                q::lock_group(c, found.group_id)?;
                let e = q::find(c, id)?.ok_or(ExpenseError::NotFound)?;
                if !admin && e.user_id != uid {
                    let leader = q::membership(c, uid)?
                        .is_some_and(|m| m.leader && m.group_id == e.group_id);
                    return Err(if leader {
                        ExpenseError::Forbidden(Forbidden(Role::Admin))
                    } else {
                        ExpenseError::NotFound
                    });
                }
                if e.kind == ExpenseKind::Reversal {
                    return Err(InvalidInput::new("a reversal cannot be voided").into());
                }
                if q::reversal_of(c, id)?.is_some() {
                    return Err(ExpenseError::AlreadyVoided);
                }
                if e.reimbursement_id.is_some() {
                    return Err(ExpenseError::AlreadyReimbursed);
                }
                if !admin && beijing_day(e.created_at) != beijing_today() {
                    return Err(ExpenseError::VoidWindowPassed);
                }
                let r = q::insert(
                    c,
                    &NewExpense {
                        group_id: e.group_id,
                        user_id: e.user_id,
                        kind: ExpenseKind::Reversal,
                        amount_fen: -e.amount_fen,
                        what: &e.what,
                        spent_on: &e.spent_on,
                        quarter: &e.quarter,
                        reverses_id: Some(e.id),
                        source: e.source,
                        recorded_by: uid,
                        created_at: time::now(),
                    },
                );
                let r = match r {
                    Ok(r) => r,
                    Err(err) if campus_dal::is_unique_violation(&err) => {
                        return Err(ExpenseError::AlreadyVoided);
                    }
                    Err(err) => return Err(err.into()),
                };
                Ok(views(c, &[r])?.remove(0))
            })
            .await
    }

    /// `GET /expenses?scope=me|group`: rows newest first.
    pub async fn list(
        &self,
        caller: &CurrentUser,
        req: ExpenseListQuery,
    ) -> Result<Page<ExpenseView>, ExpenseError> {
        let limit = page_limit(req.limit)?;
        let before = id_cursor(req.cursor.as_deref())?.map(ExpenseId);
        let quarter = req
            .quarter
            .as_deref()
            .map(Quarter::parse)
            .transpose()?
            .map(|q| q.to_string());
        let scope = req.scope.unwrap_or(Scope::Me);
        let caller = caller.clone();
        self.db
            .read(move |c| -> Result<Page<ExpenseView>, ExpenseError> {
                let whose = match scope {
                    Scope::Me => Whose::User(caller.id),
                    Scope::Group => Whose::Group(readable_group(c, &caller, req.group_id)?),
                    Scope::Center => {
                        caller.require(Role::Admin)?;
                        Whose::Everyone
                    }
                };
                let rows = q::list(c, whose, quarter.as_deref(), before, limit)?;
                let page = into_page(rows, limit, |r| r.id.0, Clone::clone);
                Ok(Page {
                    items: views(c, &page.items)?,
                    next_cursor: page.next_cursor,
                })
            })
            .await
    }

    /// `GET /expenses/summary`.
    pub async fn summary(
        &self,
        caller: &CurrentUser,
        req: SummaryQuery,
    ) -> Result<Summary, ExpenseError> {
        let quarter = match req.quarter.as_deref() {
            Some(s) => Quarter::parse(s)?,
            None => Quarter::current(),
        };
        let scope = req.scope.unwrap_or(Scope::Me);
        let caller = caller.clone();
        self.db
            .read(move |c| summarize(c, &caller, scope, req.group_id, quarter))
            .await
    }

    /// `POST /admin/reimbursements`: every unreimbursed row of the group's quarter is
    /// marked paid back, by this admin, now, in one transaction.
    pub async fn reimburse(
        &self,
        caller: &CurrentUser,
        req: Reimburse,
        idempotency_key: Option<String>,
    ) -> Result<Made<ReimbursementView>, ExpenseError> {
        caller.require(Role::Admin)?;
        let key = idempotency::Key::parse(idempotency_key)?;
        let quarter = Quarter::parse(&req.quarter)?.to_string();
        let fingerprint = Fingerprint::of("POST /admin/reimbursements", &req);
        let admin = caller.id;
        let group = req.group_id;
        self.db
            .write_tx(move |c| -> Result<Made<ReimbursementView>, ExpenseError> {
                campus_dal::users::lock(c, admin)?;
                if let Some(prev) = idempotency::earlier_id(c, admin, key.as_ref(), &fingerprint)? {
                    let r = q::find_reimbursement(c, ReimbursementId(prev))?
                        .ok_or(ExpenseError::NotFound)?;
                    return Ok(Made {
                        view: ReimbursementView::of(&r),
                        replayed: true,
                    });
                }
                if !q::lock_group(c, group)? {
                    return Err(ExpenseError::NotFound);
                }
                let open = q::unreimbursed(c, group, &quarter)?;
                if open.is_empty() {
                    return Err(ExpenseError::NothingToReimburse);
                }
                let ids: Vec<ExpenseId> = open.iter().map(|(i, _)| *i).collect();
                let r = q::insert_reimbursement(
                    c,
                    &NewReimbursement {
                        group_id: group,
                        quarter: &quarter,
                        total_fen: open.iter().map(|(_, a)| a).sum(),
                        expense_count: open.len() as i64,
                        reimbursed_by: admin,
                        reimbursed_at: time::now(),
                    },
                )?;
                q::mark_reimbursed(c, &ids, r.id)?;
                idempotency::remember(
                    c,
                    admin,
                    key.as_ref(),
                    &fingerprint,
                    201,
                    &r.id.to_string(),
                    time::now(),
                )?;
                Ok(Made {
                    view: ReimbursementView::of(&r),
                    replayed: false,
                })
            })
            .await
    }

    /// `GET /admin/reports/expenses.csv?quarter=`: one row per ledger row, UTF-8 with a
    /// byte-order mark (spreadsheets then read the Chinese text right), CRLF lines,
    /// amounts in fen and in yuan with two decimals.
    pub async fn report(
        &self,
        caller: &CurrentUser,
        quarter: Option<&str>,
    ) -> Result<Report, ExpenseError> {
        caller.require(Role::Admin)?;
        let quarter = match quarter {
            Some(s) => Quarter::parse(s)?,
            None => Quarter::current(),
        }
        .to_string();
        let qr = quarter.clone();
        let (rows, paid) = self
            .db
            .read(move |c| -> Result<_, ExpenseError> {
                let rows = q::quarter_rows(c, &qr)?;
                let rids: Vec<ReimbursementId> =
                    rows.iter().filter_map(|r| r.0.reimbursement_id).collect();
                let paid = if rids.is_empty() {
                    Vec::new()
                } else {
                    q::reimbursements_among(c, &rids)?
                };
                Ok((rows, paid))
            })
            .await?;
        let mut out = String::from("\u{feff}");
        out.push_str(
            "id,group_id,group,user_id,member,spent_on,what,amount_fen,amount_yuan,kind,reverses_id,source,recorded_at,reimbursement_id,reimbursed_at\r\n",
        );
        for (e, group, nickname) in &rows {
            let r = e
                .reimbursement_id
                .and_then(|id| paid.iter().find(|p| p.id == id));
            let cells = [
                e.id.to_string(),
                e.group_id.to_string(),
                csv_text(group),
                e.user_id.to_string(),
                csv_text(nickname.as_deref().unwrap_or("")),
                e.spent_on.clone(),
                csv_text(&e.what),
                e.amount_fen.to_string(),
                yuan(e.amount_fen),
                e.kind.to_string(),
                e.reverses_id.map(|i| i.to_string()).unwrap_or_default(),
                e.source.to_string(),
                to_utc(e.created_at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                e.reimbursement_id
                    .map(|i| i.to_string())
                    .unwrap_or_default(),
                r.map(|r| {
                    to_utc(r.reimbursed_at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                })
                .unwrap_or_default(),
            ];
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
        Ok(Report {
            filename: format!("expenses-{quarter}.csv"),
            bytes: out.into_bytes(),
        })
    }
}

/// A summary, read in one go.
fn summarize(
    c: &mut campus_dal::Conn,
    caller: &CurrentUser,
    scope: Scope,
    asked_group: Option<i64>,
    quarter: Quarter,
) -> Result<Summary, ExpenseError> {
    let qs = quarter.to_string();
    let (whose, groups): (Whose, Vec<Group>) = match scope {
        Scope::Me => {
            let groups = match q::membership(c, caller.id)? {
                Some(m) => q::find_group(c, m.group_id)?.into_iter().collect(),
                None => Vec::new(),
            };
            (Whose::User(caller.id), groups)
        }
        Scope::Group => {
            let g = readable_group(c, caller, asked_group)?;
            let groups = q::find_group(c, g)?.into_iter().collect();
            (Whose::Group(g), groups)
        }
        Scope::Center => {
            caller.require(Role::Admin)?;
            (Whose::Everyone, q::all_groups(c)?)
        }
    };
    let sums = q::sums_by_member(c, whose, &qs)?;
    // Members of the group(s) with nothing this quarter are listed with zeros.
    let mut lines: Vec<(GroupId, UserId, Sums)> = sums;
    let listed_members: Vec<(GroupId, UserId)> = match scope {
        Scope::Me => vec![],
        _ => {
            let mut v = Vec::new();
            for g in &groups {
                for (m, _) in q::members(c, g.id)? {
                    v.push((g.id, m.user_id));
                }
            }
            v
        }
    };
    for (g, u) in listed_members {
        if !lines.iter().any(|(lg, lu, _)| *lg == g && *lu == u) {
            lines.push((
                g,
                u,
                Sums {
                    total_fen: 0,
                    unreimbursed_fen: 0,
                },
            ));
        }
    }
    if scope == Scope::Me
        && lines.is_empty()
        && let Some(g) = groups.first()
    {
        lines.push((
            g.id,
            caller.id,
            Sums {
                total_fen: 0,
                unreimbursed_fen: 0,
            },
        ));
    }
    let users: Vec<UserId> = lines.iter().map(|(_, u, _)| *u).collect();
    let names = q::nicknames(c, &users)?;
    let mut by_member: Vec<MemberSums> = Vec::new();
    for (_, u, s) in &lines {
        match by_member.iter_mut().find(|m| m.user_id == *u) {
            Some(m) => {
                m.total_fen += s.total_fen;
                m.unreimbursed_fen += s.unreimbursed_fen;
            }
            None => by_member.push(MemberSums {
                user_id: *u,
                nickname: names
                    .iter()
                    .find(|(id, _)| id == u)
                    .and_then(|(_, n)| n.clone()),
                total_fen: s.total_fen,
                unreimbursed_fen: s.unreimbursed_fen,
            }),
        }
    }
    by_member.sort_by_key(|m| m.user_id);
    let mut by_group: Vec<GroupSums> = groups
        .iter()
        .map(|g| GroupSums {
            group_id: g.id,
            name: g.name.clone(),
            total_fen: 0,
            unreimbursed_fen: 0,
        })
        .collect();
    for (g, _, s) in &lines {
        if let Some(line) = by_group.iter_mut().find(|l| l.group_id == *g) {
            line.total_fen += s.total_fen;
            line.unreimbursed_fen += s.unreimbursed_fen;
        }
    }
    Ok(Summary {
        quarter: qs,
        scope,
        total_fen: lines.iter().map(|(_, _, s)| s.total_fen).sum(),
        unreimbursed_fen: lines.iter().map(|(_, _, s)| s.unreimbursed_fen).sum(),
        by_member,
        by_group,
    })
}

/// The official account's expense commands, for a sender bound to `user`.
impl Expenses {
    /// `expense 35.50 tea and cakes` / `报销 35.50 奶茶`: records today's expense.
    pub async fn record_from_text(
        &self,
        user: &CurrentUser,
        amount_fen: i64,
        what: &str,
    ) -> Result<ExpenseView, ExpenseError> {
        let req = CreateExpense {
            amount_fen,
            what: what.to_string(),
            spent_on: beijing_today().format("%Y-%m-%d").to_string(),
        };
        Ok(self
            .record(user, req, ExpenseSource::OfficialAccount, None)
            .await?
            .view)
    }

    /// `mine`, `group`, `center`: the current quarter's unreimbursed totals as a reply.
    pub async fn totals_text(
        &self,
        user: &CurrentUser,
        scope: Scope,
    ) -> Result<String, ExpenseError> {
        let s = self
            .summary(
                user,
                SummaryQuery {
                    scope: Some(scope),
                    group_id: None,
                    quarter: None,
                },
            )
            .await?;
        let head = format!(
            "{} {}: 待报销 unreimbursed ¥{} (total ¥{})",
            s.quarter,
            match scope {
                Scope::Me => "mine",
                Scope::Group => "group",
                Scope::Center => "center",
            },
            yuan(s.unreimbursed_fen),
            yuan(s.total_fen)
        );
        let lines: Vec<String> = match scope {
            Scope::Me => Vec::new(),
            Scope::Group => s
                .by_member
                .iter()
                .map(|m| {
                    format!(
                        "{}: ¥{}",
                        m.nickname
                            .clone()
                            .unwrap_or_else(|| format!("#{}", m.user_id)),
                        yuan(m.unreimbursed_fen)
                    )
                })
                .collect(),
            Scope::Center => s
                .by_group
                .iter()
                .map(|g| format!("{}: ¥{}", g.name, yuan(g.unreimbursed_fen)))
                .collect(),
        };
        Ok(std::iter::once(head)
            .chain(lines)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
