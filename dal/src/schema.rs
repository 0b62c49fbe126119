//! Written by hand: BigInt ids on both backends (SQLite's INTEGER PRIMARY KEY is 64-bit).

diesel::table! {
    users (id) {
        id -> BigInt,
        openid -> Text,
        role -> Text,
        nickname -> Nullable<Text>,
        phone_enc -> Nullable<Text>,
        dorm_enc -> Nullable<Text>,
        runner_applied_at -> Nullable<Timestamp>,
        mp_openid -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        banned_at -> Nullable<Timestamp>,
        role_granted_by -> Nullable<BigInt>,
        avatar_url -> Nullable<Text>,
    }
}

diesel::table! {
    bind_codes (code) {
        code -> Text,
        user_id -> BigInt,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    idempotency_keys (user_id, idem_key) {
        user_id -> BigInt,
        idem_key -> Text,
        request_hash -> Text,
        status_code -> Integer,
        response -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    orders (id) {
        id -> BigInt,
        out_trade_no -> Text,
        kind -> Text,
        status -> Text,
        pickup -> Text,
        dropoff -> Text,
        note -> Text,
        fee_fen -> BigInt,
        goods_fen -> BigInt,
        discount_fen -> BigInt,
        amount_fen -> BigInt,
        refunded_fen -> BigInt,
        refund_reserved_fen -> BigInt,
        customer_id -> BigInt,
        runner_id -> Nullable<BigInt>,
        pickup_code -> Text,
        prepay_id -> Nullable<Text>,
        prepay_expires_at -> Nullable<Timestamp>,
        transaction_id -> Nullable<Text>,
        pay_deadline -> Timestamp,
        created_at -> Timestamp,
        paid_at -> Nullable<Timestamp>,
        accepted_at -> Nullable<Timestamp>,
        picked_up_at -> Nullable<Timestamp>,
        delivered_at -> Nullable<Timestamp>,
        completed_at -> Nullable<Timestamp>,
        closed_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
        lease_until -> Nullable<Timestamp>,
        prepay_at -> Nullable<Timestamp>,
        wechat_close_at -> Nullable<Timestamp>,
        query_after -> Nullable<Timestamp>,
        delivery_photo_url -> Nullable<Text>,
    }
}

diesel::table! {
    refunds (id) {
        id -> BigInt,
        order_id -> BigInt,
        out_refund_no -> Text,
        refund_fen -> BigInt,
        reason -> Text,
        cause -> Text,
        status -> Text,
        refund_id -> Nullable<Text>,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        settled_at -> Nullable<Timestamp>,
        lease_until -> Nullable<Timestamp>,
        requested_by -> Nullable<BigInt>,
    }
}

diesel::table! {
    payment_events (id) {
        id -> BigInt,
        order_id -> BigInt,
        out_trade_no -> Text,
        event -> Text,
        amount_fen -> BigInt,
        source -> Text,
        reference -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    pay_notifications (id) {
        id -> BigInt,
        kind -> Text,
        out_trade_no -> Nullable<Text>,
        outcome -> Text,
        body -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(bind_codes -> users (user_id));
diesel::joinable!(idempotency_keys -> users (user_id));
diesel::joinable!(refunds -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(refunds, orders);
diesel::joinable!(payment_events -> orders (order_id));

diesel::table! {
    subscription_credits (id) {
        id -> BigInt,
        user_id -> BigInt,
        kind -> Text,
        template_id -> Nullable<Text>,
        form_id -> Nullable<Text>,
        expires_at -> Nullable<Timestamp>,
        used_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    message_log (id) {
        id -> BigInt,
        user_id -> BigInt,
        channel -> Text,
        template_id -> Nullable<Text>,
        event -> Text,
        order_id -> Nullable<BigInt>,
        outcome -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    earnings (id) {
        id -> BigInt,
        runner_id -> BigInt,
        kind -> Text,
        amount_fen -> BigInt,
        basis_fen -> BigInt,
        order_id -> Nullable<BigInt>,
        withdrawal_id -> Nullable<BigInt>,
        reference -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    withdrawals (id) {
        id -> BigInt,
        runner_id -> BigInt,
        partner_trade_no -> Text,
        amount_fen -> BigInt,
        openid -> Text,
        description -> Text,
        client_ip -> Text,
        status -> Text,
        reason -> Nullable<Text>,
        payment_no -> Nullable<Text>,
        paid_at -> Nullable<Timestamp>,
        unclear -> Bool,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        beijing_day -> Text,
        decided_by -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        lease_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    reconciliations (bill_date) {
        bill_date -> Text,
        status -> Text,
        report -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    coupons (id) {
        id -> BigInt,
        title -> Text,
        discount_kind -> Text,
        discount_fen -> Nullable<BigInt>,
        percent_off -> Nullable<Integer>,
        max_discount_fen -> Nullable<BigInt>,
        min_amount_fen -> BigInt,
        stock -> BigInt,
        stock_shards -> Integer,
        per_user_limit -> Integer,
        valid_days -> Nullable<Integer>,
        valid_until -> Nullable<Timestamp>,
        kinds -> Nullable<Text>,
        keyword -> Nullable<Text>,
        status -> Text,
        created_by -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        stopped_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    user_coupons (id) {
        id -> BigInt,
        coupon_id -> BigInt,
        user_id -> BigInt,
        seq -> Integer,
        status -> Text,
        order_id -> Nullable<BigInt>,
        claimed_at -> Timestamp,
        expires_at -> Timestamp,
        locked_at -> Nullable<Timestamp>,
        used_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    coupon_stock (coupon_id, shard) {
        coupon_id -> BigInt,
        shard -> Integer,
        cap -> BigInt,
        taken -> BigInt,
    }
}

diesel::joinable!(user_coupons -> coupons (coupon_id));
diesel::joinable!(coupon_stock -> coupons (coupon_id));
diesel::allow_tables_to_appear_in_same_query!(user_coupons, coupons, coupon_stock);

diesel::table! {
    draws (id) {
        id -> BigInt,
        title -> Text,
        status -> Text,
        draw_at -> Timestamp,
        lock_at -> Timestamp,
        creator_id -> BigInt,
        seed -> Nullable<Text>,
        algorithm -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        drawn_at -> Nullable<Timestamp>,
        cancelled_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    draw_prizes (id) {
        id -> BigInt,
        draw_id -> BigInt,
        position -> Integer,
        name -> Text,
        count -> Integer,
        coupon_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    draw_participants (id) {
        id -> BigInt,
        draw_id -> BigInt,
        user_id -> BigInt,
        joined_at -> Timestamp,
    }
}

diesel::table! {
    draw_winners (id) {
        id -> BigInt,
        draw_id -> BigInt,
        user_id -> BigInt,
        prize_id -> BigInt,
        user_coupon_id -> Nullable<BigInt>,
    }
}

diesel::joinable!(draw_prizes -> draws (draw_id));
diesel::joinable!(draw_participants -> draws (draw_id));
diesel::joinable!(draw_winners -> draws (draw_id));
diesel::allow_tables_to_appear_in_same_query!(
    draws,
    draw_prizes,
    draw_participants,
    draw_winners,
    users
);

diesel::table! {
    expense_groups (id) {
        id -> BigInt,
        name -> Text,
        created_by -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    group_members (user_id) {
        user_id -> BigInt,
        group_id -> BigInt,
        leader -> Bool,
        added_by -> BigInt,
        added_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    reimbursements (id) {
        id -> BigInt,
        group_id -> BigInt,
        quarter -> Text,
        total_fen -> BigInt,
        expense_count -> BigInt,
        reimbursed_by -> BigInt,
        reimbursed_at -> Timestamp,
    }
}

diesel::table! {
    expenses (id) {
        id -> BigInt,
        group_id -> BigInt,
        user_id -> BigInt,
        kind -> Text,
        amount_fen -> BigInt,
        what -> Text,
        spent_on -> Text,
        quarter -> Text,
        reverses_id -> Nullable<BigInt>,
        source -> Text,
        recorded_by -> BigInt,
        created_at -> Timestamp,
        reimbursement_id -> Nullable<BigInt>,
    }
}

diesel::joinable!(group_members -> expense_groups (group_id));
diesel::joinable!(expenses -> expense_groups (group_id));
diesel::allow_tables_to_appear_in_same_query!(
    expense_groups,
    group_members,
    expenses,
    reimbursements,
    users
);

diesel::table! {
    mp_messages (id) {
        id -> BigInt,
        user_id -> BigInt,
        touser -> Text,
        template_id -> Text,
        event -> Text,
        order_id -> Nullable<BigInt>,
        event_key -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_error -> Nullable<Text>,
        wechat_msgid -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    uploads (id) {
        id -> BigInt,
        user_id -> BigInt,
        purpose -> Text,
        order_id -> Nullable<BigInt>,
        object_key -> Text,
        url -> Text,
        byte_size -> Integer,
        width -> Integer,
        height -> Integer,
        check_status -> Text,
        trace_id -> Nullable<Text>,
        submit_after -> Nullable<Timestamp>,
        attempts -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        checked_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(uploads -> users (user_id));

diesel::table! {
    content_checks (id) {
        id -> BigInt,
        user_id -> BigInt,
        subject -> Text,
        subject_id -> BigInt,
        field -> Text,
        content -> Text,
        verdict -> Text,
        label -> Nullable<Integer>,
        attempts -> Integer,
        check_after -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        checked_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(content_checks -> users (user_id));
