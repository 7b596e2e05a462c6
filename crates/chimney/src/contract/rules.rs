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
/// R-CMP-3: filled requests are completed at once; a completion holds at most one partially filled request, the last, holding every received byte it had room for.
pub const R_CMP_3: Rule = Rule {
    id: "R-CMP-3",
    text: "filled requests are completed at once; a completion holds at most one partially filled request, the last, holding every received byte it had room for",
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
/// R-DEL-2: work deferred while an upcall ran is done afterwards: data waiting with nothing posted is indicated unless a refusal blocks it.
pub const R_DEL_2: Rule = Rule {
    id: "R-DEL-2",
    text: "work deferred while an upcall ran is done afterwards: data waiting with nothing posted is indicated unless a refusal blocks it",
};
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
/// R-TRM-2: at terminate completion: no request outstanding, no upcall in progress, push timer stopped, statuses legal, the delegated TCP state agreeing with the FIN.
pub const R_TRM_2: Rule = Rule {
    id: "R-TRM-2",
    text: "at terminate completion: no request outstanding, no upcall in progress, push timer stopped, statuses legal, the delegated TCP state agreeing with the FIN",
};
/// R-TRM-3: terminate returns exactly the undelivered bytes as target-pool BufferedData the host does not already own.
pub const R_TRM_3: Rule = Rule {
    id: "R-TRM-3",
    text: "terminate returns exactly the undelivered bytes as target-pool BufferedData the host does not already own",
};
/// R-BUF-1: BufferedData ends right before RcvNxt: RcvNxt advances only by bytes received after the offload.
pub const R_BUF_1: Rule = Rule {
    id: "R-BUF-1",
    text: "BufferedData ends right before RcvNxt: RcvNxt advances only by bytes received after the offload",
};
/// R-BUF-3: offload-time BufferedData is delivered before any newer data.
pub const R_BUF_3: Rule = Rule { id: "R-BUF-3", text: "offload-time BufferedData is delivered before any newer data" };

/// R-SND-1: MiniportTcpOffloadSend takes every send on an offloaded connection and returns PENDING.
pub const R_SND_1: Rule = Rule {
    id: "R-SND-1",
    text: "MiniportTcpOffloadSend takes every send on an offloaded connection and returns PENDING",
};
/// R-SND-2: send data is read in FIFO order: NBLs in chain and call order, NBs in order, from each NB's data start.
pub const R_SND_2: Rule = Rule {
    id: "R-SND-2",
    text: "send data is read in FIFO order: NBLs in chain and call order, NBs in order, from each NB's data start",
};
/// R-SND-3: the target reads the host's send MDLs and never changes their bytes.
pub const R_SND_3: Rule =
    Rule { id: "R-SND-3", text: "the target reads the host's send MDLs and never changes their bytes" };
/// R-SND-5: SendComplete returns only NBLs posted as sends on that connection, each exactly once, in posting order.
pub const R_SND_5: Rule = Rule {
    id: "R-SND-5",
    text: "SendComplete returns only NBLs posted as sends on that connection, each exactly once, in posting order",
};
/// R-SND-6: a send completes SUCCESS only once every one of its bytes is acknowledged by the peer.
pub const R_SND_6: Rule = Rule {
    id: "R-SND-6",
    text: "a send completes SUCCESS only once every one of its bytes is acknowledged by the peer",
};
/// R-SND-7: per completed send NBL, TcpOffloadBytesTransferred and each NB's data-start advance equal its bytes acknowledged.
pub const R_SND_7: Rule = Rule { id: "R-SND-7", text: "per completed send NBL, TcpOffloadBytesTransferred and each NB's data-start advance equal its bytes acknowledged" };
/// R-SND-8: a failed completion holds at most one partial NBL, and every later send of the connection fails unsent.
pub const R_SND_8: Rule = Rule {
    id: "R-SND-8",
    text: "a failed completion holds at most one partial NBL, and every later send of the connection fails unsent",
};
/// R-SND-9: REQUEST_ABORTED only after a reset or abortive disconnect; UPLOAD_IN_PROGRESS only while the connection is uploaded.
pub const R_SND_9: Rule = Rule { id: "R-SND-9", text: "REQUEST_ABORTED only after a reset or abortive disconnect; UPLOAD_IN_PROGRESS only while the connection is uploaded" };
/// R-SND-10: SendComplete and DisconnectComplete are serialized with the connection's other upcalls, never nested.
pub const R_SND_10: Rule = Rule {
    id: "R-SND-10",
    text: "SendComplete and DisconnectComplete are serialized with the connection's other upcalls, never nested",
};
/// R-SND-12: send data handed over at offload is the target's: not handed back by the offload, completed like any send.
pub const R_SND_12: Rule = Rule {
    id: "R-SND-12",
    text: "send data handed over at offload is the target's: not handed back by the offload, completed like any send",
};
/// R-SND-13: at terminate completion no send or disconnect is outstanding (each completed UPLOAD_IN_PROGRESS or earlier).
pub const R_SND_13: Rule = Rule {
    id: "R-SND-13",
    text: "at terminate completion no send or disconnect is outstanding (each completed UPLOAD_IN_PROGRESS or earlier)",
};
/// R-SND-14: no send or disconnect completes after terminate completed.
pub const R_SND_14: Rule = Rule { id: "R-SND-14", text: "no send or disconnect completes after terminate completed" };
/// R-DSC-1: MiniportTcpOffloadDisconnect takes one NBL with one NB (no data when abortive) and returns PENDING.
pub const R_DSC_1: Rule = Rule {
    id: "R-DSC-1",
    text: "MiniportTcpOffloadDisconnect takes one NBL with one NB (no data when abortive) and returns PENDING",
};
/// R-DSC-3: a graceful disconnect completes after every earlier send; SUCCESS only once its data and FIN are acknowledged.
pub const R_DSC_3: Rule = Rule {
    id: "R-DSC-3",
    text:
        "a graceful disconnect completes after every earlier send; SUCCESS only once its data and FIN are acknowledged",
};
/// R-DSC-4: an abortive disconnect completes SUCCESS after every outstanding send completed REQUEST_ABORTED.
pub const R_DSC_4: Rule = Rule {
    id: "R-DSC-4",
    text: "an abortive disconnect completes SUCCESS after every outstanding send completed REQUEST_ABORTED",
};
/// R-DSC-5: DisconnectComplete returns the disconnect's own NBL, exactly once, never a send NBL.
pub const R_DSC_5: Rule =
    Rule { id: "R-DSC-5", text: "DisconnectComplete returns the disconnect's own NBL, exactly once, never a send NBL" };
/// R-DSC-6: no send is taken after a graceful disconnect.
pub const R_DSC_6: Rule = Rule { id: "R-DSC-6", text: "no send is taken after a graceful disconnect" };

/// R-FIN-4: no upload request while half-closed (FIN_WAIT_1/2, CLOSE_WAIT) but for urgent data, a timeout, an invalid state or a hardware failure.
pub const R_FIN_4: Rule = Rule {
    id: "R-FIN-4",
    text: "no upload request while half-closed (FIN_WAIT_1/2, CLOSE_WAIT) but for urgent data, a timeout, an invalid state or a hardware failure",
};
/// R-TRM-7: once the target requested an upload, requests posted until the terminate complete UPLOAD_IN_PROGRESS with no data.
pub const R_TRM_7: Rule = Rule {
    id: "R-TRM-7",
    text: "once the target requested an upload, requests posted until the terminate complete UPLOAD_IN_PROGRESS with no data",
};
/// R-TRM-8: TcpIndicateAbort only after an acceptable RST or a hardware failure (TcpIndicateRetrieve(HardwareFailure)).
pub const R_TRM_8: Rule = Rule {
    id: "R-TRM-8",
    text: "TcpIndicateAbort only after an acceptable RST or a hardware failure (TcpIndicateRetrieve(HardwareFailure))",
};
/// R-URG-1: after requesting an upload for urgent data the target takes no data and delivers only what was placed before.
pub const R_URG_1: Rule = Rule {
    id: "R-URG-1",
    text:
        "after requesting an upload for urgent data the target takes no data and delivers only what was placed before",
};

/// Every rule the verifier checks, in the order of docs/spec.md (`chimney rules` prints this).
pub const RULES: &[Rule] = &[
    R_POST_2, R_POST_3, R_POST_10, R_CMP_1, R_CMP_2, R_CMP_3, R_CMP_4, R_CMP_5, R_CMP_6, R_CMP_7, R_CMP_9, R_ACC_1,
    R_ACC_2, R_ACC_3, R_IND_1, R_IND_3, R_IND_4, R_IND_5, R_IND_6, R_IND_7, R_IND_11, R_RET_1, R_DEL_1, R_DEL_2,
    R_DEL_3, R_DEL_5, R_FIN_1, R_FIN_3, R_FIN_4, R_RST_1, R_ABT_1, R_URG_1, R_TRM_2, R_TRM_3, R_TRM_7, R_TRM_8,
    R_BUF_1, R_BUF_3, R_SND_1, R_SND_2, R_SND_3, R_SND_5, R_SND_6, R_SND_7, R_SND_8, R_SND_9, R_SND_10, R_SND_12,
    R_SND_13, R_SND_14, R_DSC_1, R_DSC_3, R_DSC_4, R_DSC_5, R_DSC_6,
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
