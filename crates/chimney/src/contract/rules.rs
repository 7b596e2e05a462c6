//! The catalogue of rules the verifier checks (ids from docs/spec.md).

/// One checked rule: its id (docs/spec.md §9) and a one-line statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Digest id, e.g. `R-CMP-1`.
    pub id: &'static str,
    /// What the rule demands, in one line.
    pub text: &'static str,
}

/// R-POST-2: MiniportTcpOffloadReceive returns PENDING, and every posted NBL is returned through ReceiveComplete exactly once.
pub const R_POST_2: Rule = Rule { id: "R-POST-2", text: "MiniportTcpOffloadReceive returns PENDING, and every posted NBL is returned through ReceiveComplete exactly once" };
/// R-POST-3: posted NBLs are used in FIFO order: no bytes go into a request while an earlier one in the same completion has room.
pub const R_POST_3: Rule = Rule { id: "R-POST-3", text: "posted NBLs are used in FIFO order: no bytes go into a request while an earlier one in the same completion has room" };
/// R-POST-10: a zero-byte request consumes no data and is completed (when data is available, at disconnect, abort or terminate).
pub const R_POST_10: Rule = Rule { id: "R-POST-10", text: "a zero-byte request consumes no data and is completed (when data is available, at disconnect, abort or terminate)" };
/// R-CMP-1: requests are returned strictly FIFO: none is completed while an older one is outstanding.
pub const R_CMP_1: Rule = Rule {
    id: "R-CMP-1",
    text: "requests are returned strictly FIFO: none is completed while an older one is outstanding",
};
/// R-CMP-2: a completion carries a non-empty chain of NBLs posted on that same connection.
pub const R_CMP_2: Rule =
    Rule { id: "R-CMP-2", text: "a completion carries a non-empty chain of NBLs posted on that same connection" };
/// R-CMP-3: filled requests are completed at once; a completion holds at most one partially filled request, the last.
pub const R_CMP_3: Rule = Rule {
    id: "R-CMP-3",
    text: "filled requests are completed at once; a completion holds at most one partially filled request, the last",
};
/// R-CMP-4: a request with free room completes SUCCESS only by push (PSH or push timer), FIN or terminate.
pub const R_CMP_4: Rule = Rule {
    id: "R-CMP-4",
    text: "a request with free room completes SUCCESS only by push (PSH or push timer), FIN or terminate",
};
/// R-CMP-5: per connection, ReceiveComplete, ReceiveIndicate and event upcalls are never concurrent or nested.
pub const R_CMP_5: Rule = Rule {
    id: "R-CMP-5",
    text: "per connection, ReceiveComplete, ReceiveIndicate and event upcalls are never concurrent or nested",
};
/// R-CMP-6: ReceiveComplete is not re-entered from a post made inside ReceiveComplete.
pub const R_CMP_6: Rule =
    Rule { id: "R-CMP-6", text: "ReceiveComplete is not re-entered from a post made inside ReceiveComplete" };
/// R-CMP-7: each completed NBL has Status and TcpOffloadBytesTransferred written, with a status legal at that moment.
pub const R_CMP_7: Rule = Rule {
    id: "R-CMP-7",
    text: "each completed NBL has Status and TcpOffloadBytesTransferred written, with a status legal at that moment",
};
/// R-CMP-9: the push timer runs only while the head request is a partially filled push-mode request.
pub const R_CMP_9: Rule = Rule {
    id: "R-CMP-9",
    text: "the push timer runs only while the head request is a partially filled push-mode request",
};
/// R-ACC-1: TcpOffloadBytesTransferred equals the DataOffset advance and the DataLength decrease.
pub const R_ACC_1: Rule = Rule {
    id: "R-ACC-1",
    text: "TcpOffloadBytesTransferred equals the DataOffset advance and the DataLength decrease",
};
/// R-ACC-2: no more bytes are delivered than were received: nothing delivered twice or invented.
pub const R_ACC_2: Rule =
    Rule { id: "R-ACC-2", text: "no more bytes are delivered than were received: nothing delivered twice or invented" };
/// R-ACC-3: delivered bytes are exactly the in-sequence stream from the first undelivered byte.
pub const R_ACC_3: Rule =
    Rule { id: "R-ACC-3", text: "delivered bytes are exactly the in-sequence stream from the first undelivered byte" };
/// R-IND-1: no receive indication while a posted request is outstanding.
pub const R_IND_1: Rule = Rule { id: "R-IND-1", text: "no receive indication while a posted request is outstanding" };
/// R-IND-3: an indication is one stand-alone NBL from the target's pool with data in its net buffer.
pub const R_IND_3: Rule = Rule {
    id: "R-IND-3",
    text: "an indication is one stand-alone NBL from the target's pool with data in its net buffer",
};
/// R-IND-4: the Status argument of an indication is NDIS_STATUS_SUCCESS.
pub const R_IND_4: Rule = Rule { id: "R-IND-4", text: "the Status argument of an indication is NDIS_STATUS_SUCCESS" };
/// R-IND-5: an accepted indication NBL belongs to the host until returned; BytesConsumed matches the outcome.
pub const R_IND_5: Rule = Rule {
    id: "R-IND-5",
    text: "an accepted indication NBL belongs to the host until returned; BytesConsumed matches the outcome",
};
/// R-IND-6: data refused by an indication stays buffered and is delivered before newer data.
pub const R_IND_6: Rule =
    Rule { id: "R-IND-6", text: "data refused by an indication stays buffered and is delivered before newer data" };
/// R-IND-7: after a refused indication, no indication until the host posts a request.
pub const R_IND_7: Rule =
    Rule { id: "R-IND-7", text: "after a refused indication, no indication until the host posts a request" };
/// R-IND-11: no upcall on a connection before its offload has completed.
pub const R_IND_11: Rule = Rule { id: "R-IND-11", text: "no upcall on a connection before its offload has completed" };
/// R-RET-1: MiniportTcpOffloadReceiveReturn returns SUCCESS and takes back only NBLs the host owns.
pub const R_RET_1: Rule = Rule {
    id: "R-RET-1",
    text: "MiniportTcpOffloadReceiveReturn returns SUCCESS and takes back only NBLs the host owns",
};
/// R-DEL-1: requests posted during an upcall are filled before any further indication.
pub const R_DEL_1: Rule =
    Rule { id: "R-DEL-1", text: "requests posted during an upcall are filled before any further indication" };
/// R-DEL-3: buffered data is delivered before newer data.
pub const R_DEL_3: Rule = Rule { id: "R-DEL-3", text: "buffered data is delivered before newer data" };
/// R-DEL-5: PSH completes a partially filled push-mode request at once; non-push requests ignore PSH.
pub const R_DEL_5: Rule = Rule {
    id: "R-DEL-5",
    text: "PSH completes a partially filled push-mode request at once; non-push requests ignore PSH",
};
/// R-FIN-1: TcpIndicateDisconnect only after FIN and only once every earlier byte is consumed; no data after it.
pub const R_FIN_1: Rule = Rule {
    id: "R-FIN-1",
    text: "TcpIndicateDisconnect only after FIN and only once every earlier byte is consumed; no data after it",
};
/// R-FIN-3: requests posted after TcpIndicateDisconnect complete NDIS_STATUS_INVALID_STATE with 0 bytes.
pub const R_FIN_3: Rule = Rule {
    id: "R-FIN-3",
    text: "requests posted after TcpIndicateDisconnect complete NDIS_STATUS_INVALID_STATE with 0 bytes",
};
/// R-RST-1: after an acceptable RST: TcpIndicateAbort, every request completes REQUEST_ABORTED, nothing else is delivered.
pub const R_RST_1: Rule = Rule {
    id: "R-RST-1",
    text:
        "after an acceptable RST: TcpIndicateAbort, every request completes REQUEST_ABORTED, nothing else is delivered",
};
/// R-ABT-1: after a host abortive disconnect: no indications, every request completes REQUEST_ABORTED.
pub const R_ABT_1: Rule = Rule {
    id: "R-ABT-1",
    text: "after a host abortive disconnect: no indications, every request completes REQUEST_ABORTED",
};
/// R-TRM-2: at terminate completion: no request outstanding, no upcall in progress, push timer stopped, statuses legal.
pub const R_TRM_2: Rule = Rule {
    id: "R-TRM-2",
    text: "at terminate completion: no request outstanding, no upcall in progress, push timer stopped, statuses legal",
};
/// R-TRM-3: terminate returns exactly the undelivered bytes as target-pool BufferedData.
pub const R_TRM_3: Rule =
    Rule { id: "R-TRM-3", text: "terminate returns exactly the undelivered bytes as target-pool BufferedData" };
/// R-BUF-1: BufferedData ends right before RcvNxt: RcvNxt advances only by bytes received after the offload.
pub const R_BUF_1: Rule = Rule {
    id: "R-BUF-1",
    text: "BufferedData ends right before RcvNxt: RcvNxt advances only by bytes received after the offload",
};
/// R-BUF-3: offload-time BufferedData is delivered before any newer data.
pub const R_BUF_3: Rule = Rule { id: "R-BUF-3", text: "offload-time BufferedData is delivered before any newer data" };

/// Every rule the verifier checks, in the order of docs/spec.md (`chimney rules` prints this).
pub const RULES: &[Rule] = &[
    R_POST_2, R_POST_3, R_POST_10, R_CMP_1, R_CMP_2, R_CMP_3, R_CMP_4, R_CMP_5, R_CMP_6, R_CMP_7, R_CMP_9, R_ACC_1,
    R_ACC_2, R_ACC_3, R_IND_1, R_IND_3, R_IND_4, R_IND_5, R_IND_6, R_IND_7, R_IND_11, R_RET_1, R_DEL_1, R_DEL_3,
    R_DEL_5, R_FIN_1, R_FIN_3, R_RST_1, R_ABT_1, R_TRM_2, R_TRM_3, R_BUF_1, R_BUF_3,
];

/// The rule with this id, if the verifier checks it.
pub fn by_id(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_listed() {
        let mut ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
        assert_eq!(by_id("R-CMP-1"), Some(&R_CMP_1));
        assert!(by_id("R-NOPE").is_none());
    }
}
