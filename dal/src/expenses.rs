//! Team expenses: groups and their members, the append-only expense ledger, and the
//! reimbursements that pay a group's quarter back. Every write that depends on what a
//! group's ledger holds (a void, a reimbursement) first locks the group's row, so the
//! two never interleave on any backend.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::{Conn, DbConn};
use crate::domain::{ExpenseKind, ExpenseSource};
use crate::ids::{ExpenseId, GroupId, ReimbursementId, UserId};
use crate::schema::{expense_groups, expenses, group_members, reimbursements, users};

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = expense_groups)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    pub created_by: UserId,
    pub created_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = expense_groups, treat_none_as_default_value = false)]
pub struct NewGroup<'a> {
    pub name: &'a str,
    pub created_by: UserId,
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = group_members)]
pub struct Member {
    pub user_id: UserId,
    pub group_id: GroupId,
    pub leader: bool,
    pub added_by: UserId,
    pub added_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = group_members, treat_none_as_default_value = false)]
pub struct NewMember {
    pub user_id: UserId,
    pub group_id: GroupId,
    pub leader: bool,
    pub added_by: UserId,
    pub added_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = expenses)]
pub struct Expense {
    pub id: ExpenseId,
    pub group_id: GroupId,
    /// The member who advanced the money (a reversal keeps the original's member).
    pub user_id: UserId,
    pub kind: ExpenseKind,
    /// Positive for an expense, the negated amount for its reversal.
    pub amount_fen: i64,
    pub what: String,
    /// Beijing day, `YYYY-MM-DD`.
    pub spent_on: String,
    /// `2026Q4`.
    pub quarter: String,
    pub reverses_id: Option<ExpenseId>,
    pub source: ExpenseSource,
    /// Who wrote the row: the member, or the admin who voided it.
    pub recorded_by: UserId,
    pub created_at: NaiveDateTime,
    pub reimbursement_id: Option<ReimbursementId>,
}

#[derive(Insertable)]
#[diesel(table_name = expenses, treat_none_as_default_value = false)]
pub struct NewExpense<'a> {
    pub group_id: GroupId,
    pub user_id: UserId,
    pub kind: ExpenseKind,
    pub amount_fen: i64,
    pub what: &'a str,
    pub spent_on: &'a str,
    pub quarter: &'a str,
    pub reverses_id: Option<ExpenseId>,
    pub source: ExpenseSource,
    pub recorded_by: UserId,
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = reimbursements)]
pub struct Reimbursement {
    pub id: ReimbursementId,
    pub group_id: GroupId,
    pub quarter: String,
    pub total_fen: i64,
    pub expense_count: i64,
    pub reimbursed_by: UserId,
    pub reimbursed_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = reimbursements, treat_none_as_default_value = false)]
pub struct NewReimbursement<'a> {
    pub group_id: GroupId,
    pub quarter: &'a str,
    pub total_fen: i64,
    pub expense_count: i64,
    pub reimbursed_by: UserId,
    pub reimbursed_at: NaiveDateTime,
}

/// The id the last insert on this connection made (`RETURNING` is not available
/// through the MultiConnection enum).
fn last_insert_id(conn: &mut Conn) -> QueryResult<i64> {
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    match conn {
        DbConn::Sqlite(c) => diesel::select(sql::<BigInt>("last_insert_rowid()")).get_result(c),
        #[cfg(feature = "mysql")]
        DbConn::Mysql(c) => {
            diesel::select(sql::<BigInt>("CAST(LAST_INSERT_ID() AS SIGNED)")).get_result(c)
        }
    }
}

pub fn insert_group(conn: &mut Conn, new: &NewGroup<'_>) -> QueryResult<Group> {
    diesel::insert_into(expense_groups::table)
        .values(new)
        .execute(conn)?;
    let id = last_insert_id(conn)?;
    find_group(conn, GroupId(id))?.ok_or(diesel::result::Error::NotFound)
}

pub fn find_group(conn: &mut Conn, id: GroupId) -> QueryResult<Option<Group>> {
    expense_groups::table
        .find(id.0)
        .select(Group::as_select())
        .first(conn)
        .optional()
}

pub fn all_groups(conn: &mut Conn) -> QueryResult<Vec<Group>> {
    expense_groups::table
        .select(Group::as_select())
        .order(expense_groups::id.asc())
        .load(conn)
}

/// Takes the group's row lock: writes that depend on the group's ledger serialize here.
/// False: no such group.
pub fn lock_group(conn: &mut Conn, id: GroupId) -> QueryResult<bool> {
    lock_row!(conn, expense_groups, id.0)
}

pub fn membership(conn: &mut Conn, user: UserId) -> QueryResult<Option<Member>> {
    group_members::table
        .find(user.0)
        .select(Member::as_select())
        .first(conn)
        .optional()
}

pub fn insert_member(conn: &mut Conn, new: &NewMember) -> QueryResult<usize> {
    diesel::insert_into(group_members::table)
        .values(new)
        .execute(conn)
}

/// Changes a member's leader flag within their group; 0 rows when they are not in it.
pub fn set_leader(
    conn: &mut Conn,
    user: UserId,
    group: GroupId,
    leader: bool,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        group_members::table
            .find(user.0)
            .filter(group_members::group_id.eq(group.0)),
    )
    .set((
        group_members::leader.eq(leader),
        group_members::updated_at.eq(now),
    ))
    .execute(conn)
}

/// A group's members with their nicknames, by user id.
pub fn members(conn: &mut Conn, group: GroupId) -> QueryResult<Vec<(Member, Option<String>)>> {
    group_members::table
        .inner_join(users::table.on(users::id.eq(group_members::user_id)))
        .filter(group_members::group_id.eq(group.0))
        .select((Member::as_select(), users::nickname))
        .order(group_members::user_id.asc())
        .load(conn)
}

pub fn insert(conn: &mut Conn, new: &NewExpense<'_>) -> QueryResult<Expense> {
    diesel::insert_into(expenses::table)
        .values(new)
        .execute(conn)?;
    let id = last_insert_id(conn)?;
    find(conn, ExpenseId(id))?.ok_or(diesel::result::Error::NotFound)
}

pub fn find(conn: &mut Conn, id: ExpenseId) -> QueryResult<Option<Expense>> {
    expenses::table
        .find(id.0)
        .select(Expense::as_select())
        .first(conn)
        .optional()
}

/// The reversal of `id`, if it was voided.
pub fn reversal_of(conn: &mut Conn, id: ExpenseId) -> QueryResult<Option<Expense>> {
    expenses::table
        .filter(expenses::reverses_id.eq(id.0))
        .select(Expense::as_select())
        .first(conn)
        .optional()
}

/// Whose rows a list or a sum covers.
#[derive(Clone, Copy, Debug)]
pub enum Whose {
    User(UserId),
    Group(GroupId),
    Everyone,
}

/// Rows newest first, ids below `before`, of a quarter when given; `limit + 1` rows to
/// tell if more follow.
pub fn list(
    conn: &mut Conn,
    whose: Whose,
    quarter: Option<&str>,
    before: Option<ExpenseId>,
    limit: i64,
) -> QueryResult<Vec<Expense>> {
    let mut q = expenses::table.select(Expense::as_select()).into_boxed();
    q = match whose {
        Whose::User(u) => q.filter(expenses::user_id.eq(u.0)),
        Whose::Group(g) => q.filter(expenses::group_id.eq(g.0)),
        Whose::Everyone => q,
    };
    if let Some(qr) = quarter {
        q = q.filter(expenses::quarter.eq(qr.to_string()));
    }
    if let Some(b) = before {
        q = q.filter(expenses::id.lt(b.0));
    }
    q.order(expenses::id.desc()).limit(limit + 1).load(conn)
}

/// Of `ids`, those that have a reversal: (original id, reversal id).
pub fn reversals_among(
    conn: &mut Conn,
    ids: &[ExpenseId],
) -> QueryResult<Vec<(ExpenseId, ExpenseId)>> {
    let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
    expenses::table
        .filter(expenses::reverses_id.eq_any(ids))
        .select((expenses::reverses_id.assume_not_null(), expenses::id))
        .load::<(i64, i64)>(conn)
        .map(|v| {
            v.into_iter()
                .map(|(a, b)| (ExpenseId(a), ExpenseId(b)))
                .collect()
        })
}

/// One line of a summary: the sums of a member's (or a group's) rows in a quarter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sums {
    pub total_fen: i64,
    pub unreimbursed_fen: i64,
}

/// Per (group, member) of the quarter, for the rows `whose` covers: total and
/// unreimbursed sums, reversals counting with their negative amounts. Summed here
/// rather than in SQL: `SUM` of a BIGINT is a DECIMAL on MariaDB and diesel reads it
/// only as a big decimal; a quarter of a team's expenses is a few thousand rows at most.
pub fn sums_by_member(
    conn: &mut Conn,
    whose: Whose,
    quarter: &str,
) -> QueryResult<Vec<(GroupId, UserId, Sums)>> {
    let mut q = expenses::table
        .filter(expenses::quarter.eq(quarter.to_string()))
        .select((
            expenses::group_id,
            expenses::user_id,
            expenses::amount_fen,
            expenses::reimbursement_id.is_null(),
        ))
        .into_boxed();
    q = match whose {
        Whose::User(u) => q.filter(expenses::user_id.eq(u.0)),
        Whose::Group(g) => q.filter(expenses::group_id.eq(g.0)),
        Whose::Everyone => q,
    };
    let rows: Vec<(i64, i64, i64, bool)> = q.load(conn)?;
    let mut out: std::collections::BTreeMap<(i64, i64), Sums> = Default::default();
    for (g, u, amount, open) in rows {
        let s = out.entry((g, u)).or_insert(Sums {
            total_fen: 0,
            unreimbursed_fen: 0,
        });
        s.total_fen += amount;
        if open {
            s.unreimbursed_fen += amount;
        }
    }
    Ok(out
        .into_iter()
        .map(|((g, u), s)| (GroupId(g), UserId(u), s))
        .collect())
}

/// The rows of the group's quarter not paid back yet, with their amounts (the caller
/// holds the group's lock, so none can join them meanwhile).
pub fn unreimbursed(
    conn: &mut Conn,
    group: GroupId,
    quarter: &str,
) -> QueryResult<Vec<(ExpenseId, i64)>> {
    expenses::table
        .filter(expenses::group_id.eq(group.0))
        .filter(expenses::quarter.eq(quarter.to_string()))
        .filter(expenses::reimbursement_id.is_null())
        .select((expenses::id, expenses::amount_fen))
        .load::<(i64, i64)>(conn)
        .map(|v| v.into_iter().map(|(i, a)| (ExpenseId(i), a)).collect())
}

pub fn insert_reimbursement(
    conn: &mut Conn,
    new: &NewReimbursement<'_>,
) -> QueryResult<Reimbursement> {
    diesel::insert_into(reimbursements::table)
        .values(new)
        .execute(conn)?;
    let id = last_insert_id(conn)?;
    find_reimbursement(conn, ReimbursementId(id))?.ok_or(diesel::result::Error::NotFound)
}

pub fn find_reimbursement(
    conn: &mut Conn,
    id: ReimbursementId,
) -> QueryResult<Option<Reimbursement>> {
    reimbursements::table
        .find(id.0)
        .select(Reimbursement::as_select())
        .first(conn)
        .optional()
}

/// Links the listed rows to the reimbursement, only those still unreimbursed.
pub fn mark_reimbursed(
    conn: &mut Conn,
    ids: &[ExpenseId],
    r: ReimbursementId,
) -> QueryResult<usize> {
    let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
    diesel::update(
        expenses::table
            .filter(expenses::id.eq_any(ids))
            .filter(expenses::reimbursement_id.is_null()),
    )
    .set(expenses::reimbursement_id.eq(Some(r.0)))
    .execute(conn)
}

/// The reimbursements among `ids`.
pub fn reimbursements_among(
    conn: &mut Conn,
    ids: &[ReimbursementId],
) -> QueryResult<Vec<Reimbursement>> {
    let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
    reimbursements::table
        .filter(reimbursements::id.eq_any(ids))
        .select(Reimbursement::as_select())
        .load(conn)
}

/// Every row of a quarter, oldest first, with the member's nickname and group name
/// (the CSV report).
pub fn quarter_rows(
    conn: &mut Conn,
    quarter: &str,
) -> QueryResult<Vec<(Expense, String, Option<String>)>> {
    expenses::table
        .inner_join(expense_groups::table)
        .inner_join(users::table.on(users::id.eq(expenses::user_id)))
        .filter(expenses::quarter.eq(quarter.to_string()))
        .select((Expense::as_select(), expense_groups::name, users::nickname))
        .order(expenses::id.asc())
        .load(conn)
}

/// Nicknames of these users.
pub fn nicknames(conn: &mut Conn, ids: &[UserId]) -> QueryResult<Vec<(UserId, Option<String>)>> {
    let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
    users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::nickname))
        .load::<(i64, Option<String>)>(conn)
        .map(|v| v.into_iter().map(|(i, n)| (UserId(i), n)).collect())
}
