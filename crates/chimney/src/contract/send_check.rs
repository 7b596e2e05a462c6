//! The verifier's model of one connection's send half: what the host posted (with a handle
//! on its bytes), what the peer acknowledged, and every disconnect, against which each send
//! and disconnect call is checked (rules R-SND-* and R-DSC-*, docs/spec.md §7.3–§7.4).
//!
//! The posted bytes are not copied: the verifier keeps a clone of each MDL (the same memory,
//! copied on write, so it always holds the bytes as posted) and compares what the target
//! reads against it. A read straight from the right place of the right MDL is proved equal
//! by address; anything else is compared byte for byte.
//!
//! Pure bookkeeping without locks: [`super::Verifier`] owns one per connection and turns
//! what this returns into violations.

use std::collections::VecDeque;

use super::rules::{self, Rule};
use crate::ndis::{DisconnectKind, Mdl, NblChain, NblId, NdisStatus};

/// A finding: the rule, the NBL if one is to blame, and what happened.
pub(crate) type Finding = (&'static Rule, Option<NblId>, String);

/// One posted send NBL.
#[derive(Debug, Clone)]
struct SendRec {
    id: NblId,
    /// Stream offset of its first byte.
    start: u64,
    len: u64,
    /// Each NB's data offset and length at posting.
    nbs: Vec<(usize, usize)>,
    /// This is the graceful disconnect's NBL (its data rides the stream; it is completed by
    /// DisconnectComplete, not SendComplete).
    disconnect: bool,
}

/// A contiguous run of posted bytes held as pieces of the host's MDLs (shared, not copied).
#[derive(Debug, Default)]
struct Pieces {
    /// (absolute start, MDL, offset in it, length), in stream order; absolute offsets count
    /// every byte ever pushed, so a piece is found by binary search.
    pieces: VecDeque<(u64, Mdl, usize, usize)>,
    /// Absolute offset of the first held byte, and of one past the last.
    head: u64,
    tail: u64,
}

impl Pieces {
    fn len(&self) -> usize {
        (self.tail - self.head) as usize
    }

    fn push(&mut self, mdl: &Mdl, at: usize, n: usize) {
        if n > 0 {
            self.pieces.push_back((self.tail, mdl.clone(), at, n));
            self.tail += n as u64;
        }
    }

    /// Drops the first `n` bytes.
    fn drop_front(&mut self, n: usize) {
        self.head = (self.head + n as u64).min(self.tail);
        while self.pieces.front().is_some_and(|p| p.0 + p.3 as u64 <= self.head) {
            self.pieces.pop_front();
        }
    }

    /// Keeps the first `keep` bytes.
    fn truncate(&mut self, keep: usize) {
        self.tail = (self.head + keep as u64).min(self.tail);
        while let Some(back) = self.pieces.back_mut() {
            if back.0 >= self.tail {
                self.pieces.pop_back();
            } else {
                back.3 = back.3.min((self.tail - back.0) as usize);
                break;
            }
        }
    }

    /// Whether `bytes` equal the held bytes at `at` (from the first held byte): by address
    /// when they are the very bytes of the MDL (a read from the right place), else by
    /// content.
    fn eq_at(&self, at: usize, bytes: &[u8]) -> bool {
        if at + bytes.len() > self.len() {
            return false;
        }
        let mut abs = self.head + at as u64;
        let mut rest = bytes;
        let mut i = self.pieces.partition_point(|p| p.0 + p.3 as u64 <= abs);
        while !rest.is_empty() {
            let Some((start, mdl, off, n)) = self.pieces.get(i) else { return false };
            let pos = (abs - start) as usize;
            let k = (n - pos).min(rest.len());
            let held = &mdl.bytes()[off + pos..off + pos + k];
            if !(std::ptr::eq(held.as_ptr(), rest.as_ptr()) || held == &rest[..k]) {
                return false;
            }
            rest = &rest[k..];
            abs += k as u64;
            i += 1;
        }
        true
    }
}

/// The disconnect the host asked for and whether it has completed.
#[derive(Debug, Clone)]
struct DiscRec {
    kind: DisconnectKind,
    /// Its NBL, if the host gave one.
    id: Option<NblId>,
    /// Graceful: the stream offset where the FIN goes.
    fin_at: u64,
    completed: bool,
}

/// One connection's send half as the verifier sees it.
#[derive(Debug, Default)]
pub(crate) struct SendCheck {
    posts: VecDeque<SendRec>,
    /// The posted bytes from stream offset `base` (R-SND-2/3), as pieces of the host's MDLs.
    bytes: Pieces,
    base: u64,
    posted: u64,
    /// What the engine said the peer acknowledged (`posted + 1` covers the FIN).
    acked: u64,
    /// A failure status was completed: every later send fails too (R-SND-8).
    failed: bool,
    discs: Vec<DiscRec>,
    graceful: bool,
    /// A RST arrived or the host aborted (REQUEST_ABORTED is legal).
    pub(crate) reset: bool,
    /// Terminate requested or an upload indicated (UPLOAD_IN_PROGRESS is legal).
    pub(crate) uploading: bool,
    /// A send arrived after a graceful disconnect; judged when the call returns.
    pending_dsc6: bool,
}

fn status_ok_for_failure(c: &SendCheck, status: NdisStatus) -> Result<(), String> {
    match status {
        NdisStatus::RequestAborted if c.reset => Ok(()),
        NdisStatus::UploadInProgress if c.uploading => Ok(()),
        NdisStatus::RequestAborted => Err("REQUEST_ABORTED without a reset or abortive disconnect".into()),
        NdisStatus::UploadInProgress => Err("UPLOAD_IN_PROGRESS while the connection is not being uploaded".into()),
        other => Err(format!("status {other} is not a send completion status")),
    }
}

impl SendCheck {
    /// Whether the host disconnected gracefully (sends after that are its mistake).
    pub(crate) fn closed_for_sends(&self) -> bool {
        self.graceful
    }

    fn record(&mut self, nbls: &NblChain, disconnect: bool) {
        for nbl in nbls.iter() {
            let mut nbs = Vec::new();
            let mut len = 0u64;
            for nb in nbl.net_buffers() {
                nbs.push((nb.data_offset(), nb.data_length()));
                len += nb.data_length() as u64;
                for (mdl, at, n) in nb.mdl_pieces(nb.data_offset(), nb.data_length()) {
                    self.bytes.push(mdl, at, n);
                }
            }
            self.posts.push_back(SendRec { id: nbl.id(), start: self.posted, len, nbs, disconnect });
            self.posted += len;
        }
    }

    /// MiniportTcpOffloadSend (or a nested send), recorded before the target runs (it may
    /// complete the NBLs before the call returns).
    pub(crate) fn on_send(&mut self, nbls: &NblChain, f: &mut Vec<Finding>) {
        if self.graceful {
            // A target that refuses it, as it should, is forgiven in `on_send_refused`.
            self.pending_dsc6 = true;
        }
        let _ = f;
        self.record(nbls, false);
    }

    /// The target handed the send back (`closed`: because the host had disconnected).
    pub(crate) fn on_send_refused(&mut self, nbls: &NblChain, closed: bool, f: &mut Vec<Finding>) {
        let ids: Vec<NblId> = nbls.iter().map(|n| n.id()).collect();
        let mut removed = 0u64;
        self.posts.retain(|r| {
            let gone = ids.contains(&r.id);
            if gone {
                removed += r.len;
            }
            !gone
        });
        // The refused NBLs were the last recorded: drop their bytes again.
        self.posted -= removed;
        let keep = self.bytes.len().saturating_sub(removed as usize);
        self.bytes.truncate(keep);
        if !(closed && self.graceful) {
            f.push((&rules::R_SND_1, ids.first().copied(), "send refused on an offloaded connection".into()));
        }
        self.pending_dsc6 = false;
    }

    /// The send call returned: a send the target took after a graceful disconnect breaks
    /// R-DSC-6.
    pub(crate) fn on_send_done(&mut self, status: Option<NdisStatus>, f: &mut Vec<Finding>) {
        if std::mem::take(&mut self.pending_dsc6) {
            f.push((&rules::R_DSC_6, None, "send taken after a graceful disconnect".into()));
        }
        if let Some(s) = status.filter(|&s| s != NdisStatus::Pending) {
            f.push((&rules::R_SND_1, None, format!("MiniportTcpOffloadSend returned {s}")));
        }
    }

    /// Send data handed over at offload (R-SND-12).
    pub(crate) fn on_offload_data(&mut self, nbls: &NblChain) {
        self.record(nbls, false);
    }

    /// MiniportTcpOffloadDisconnect, before the target runs (it may complete it at once).
    /// Returns whether it was well-formed and recorded.
    pub(crate) fn on_disconnect(&mut self, kind: DisconnectKind, nbl: &NblChain) -> bool {
        let malformed = nbl.len() > 1
            || nbl
                .front()
                .is_some_and(|n| n.net_buffer_count() > 1 || (kind == DisconnectKind::Abortive && n.data_length() > 0));
        let second = self.graceful && kind == DisconnectKind::Graceful;
        if malformed || second {
            return false;
        }
        let id = nbl.front().map(|n| n.id());
        if kind == DisconnectKind::Graceful {
            self.graceful = true;
            self.record(nbl, true);
        } else {
            self.reset = true;
        }
        self.discs.push(DiscRec { kind, id, fin_at: self.posted, completed: false });
        true
    }

    /// How the target answered a disconnect `on_disconnect` judged (`recorded`).
    pub(crate) fn on_disconnect_done(
        &mut self,
        kind: DisconnectKind,
        recorded: bool,
        result: Result<NdisStatus, ()>,
        f: &mut Vec<Finding>,
    ) {
        match (recorded, result) {
            (true, Ok(NdisStatus::Pending)) | (false, Err(())) => {}
            (true, Ok(other)) => {
                f.push((&rules::R_DSC_1, None, format!("MiniportTcpOffloadDisconnect returned {other}")))
            }
            (false, Ok(_)) => f.push((&rules::R_DSC_1, None, "a malformed or repeated disconnect was taken".into())),
            (true, Err(())) => {
                f.push((&rules::R_DSC_1, None, "a well-formed disconnect was refused".into()));
                if let Some(d) = self.discs.pop() {
                    if kind == DisconnectKind::Graceful {
                        self.graceful = false;
                        if let Some(p) = self.posts.iter().position(|r| r.disconnect && Some(r.id) == d.id) {
                            let r = self.posts.remove(p).expect("position is valid");
                            self.posted -= r.len;
                            let keep = self.bytes.len().saturating_sub(r.len as usize);
                            self.bytes.truncate(keep);
                        }
                    }
                }
            }
        }
    }

    /// The engine told the target the peer acknowledged up to `upto`.
    pub(crate) fn on_acked(&mut self, upto: u64) {
        self.acked = self.acked.max(upto);
    }

    /// The target showed the TCP layer `bytes` from stream offset `at` (R-SND-2, R-SND-3).
    pub(crate) fn on_read(&self, at: u64, bytes: &[u8], f: &mut Vec<Finding>) {
        if at < self.base {
            // Bytes already completed and handed back: reading them is reading the host's
            // buffer after it got it back.
            f.push((&rules::R_SND_2, None, format!("bytes at offset {at} read after their NBL completed")));
            return;
        }
        let rel = (at - self.base) as usize;
        if rel + bytes.len() > self.bytes.len() {
            f.push((&rules::R_SND_2, None, format!("{} bytes at offset {at}: beyond what was posted", bytes.len())));
            return;
        }
        if !self.bytes.eq_at(rel, bytes) {
            f.push((&rules::R_SND_3, None, format!("bytes at offset {at} differ from what the host posted there")));
        }
    }

    /// Drops the copy of bytes below `upto` (their NBLs completed).
    fn release(&mut self, upto: u64) {
        if upto > self.base {
            let n = ((upto - self.base) as usize).min(self.bytes.len());
            self.bytes.drop_front(n);
            self.base += n as u64;
        }
    }

    /// Checks one completed NBL against its record: status, count and every NB's advance.
    fn check_done(
        &mut self,
        rec: &SendRec,
        nbl: &crate::ndis::NetBufferList,
        partial_seen: &mut bool,
        f: &mut Vec<Finding>,
    ) {
        let id = Some(rec.id);
        let acked_data = self.acked.min(self.posted);
        let acked_here = acked_data.saturating_sub(rec.start).min(rec.len);
        let count = nbl.tcp_offload_bytes_transferred() as u64;
        if nbl.status == NdisStatus::Success {
            if acked_here < rec.len || self.failed {
                let why = if self.failed {
                    "SUCCESS after an earlier send failed".to_string()
                } else {
                    format!("SUCCESS with {acked_here} of {} bytes acknowledged", rec.len)
                };
                let rule = if self.failed { &rules::R_SND_8 } else { &rules::R_SND_6 };
                f.push((rule, id, why));
            }
        } else {
            if let Err(why) = status_ok_for_failure(self, nbl.status) {
                f.push((&rules::R_SND_9, id, why));
            }
            if acked_here > 0 && acked_here < rec.len {
                if *partial_seen {
                    f.push((&rules::R_SND_8, id, "a second partial NBL in one failed completion".into()));
                }
                *partial_seen = true;
            }
            if self.failed && count > 0 {
                f.push((&rules::R_SND_8, id, "bytes counted on a send after the failed one".into()));
                return;
            }
            self.failed = true;
        }
        let want = if nbl.status == NdisStatus::Success { rec.len } else { acked_here };
        if count != want {
            f.push((&rules::R_SND_7, id, format!("TcpOffloadBytesTransferred {count}, {want} acknowledged")));
        }
        // Each NB advanced by its own acknowledged bytes, in order.
        let mut left = want;
        let nbs: Vec<_> = nbl.net_buffers().map(|nb| (nb.data_offset(), nb.data_length())).collect();
        if nbs.len() != rec.nbs.len() {
            f.push((&rules::R_SND_7, id, "the NBL came back with a different number of NBs".into()));
            return;
        }
        for (k, (&(off0, len0), &(off, len))) in rec.nbs.iter().zip(nbs.iter()).enumerate() {
            let mine = left.min(len0 as u64) as usize;
            left -= mine as u64;
            if off != off0 + mine || len + mine != len0 {
                f.push((
                    &rules::R_SND_7,
                    id,
                    format!("NB {k}: data start moved by {}, {mine} acknowledged", off as i64 - off0 as i64),
                ));
            }
        }
    }

    /// NdisTcpOffloadSendComplete.
    pub(crate) fn on_send_complete(&mut self, nbls: &NblChain, f: &mut Vec<Finding>) {
        if nbls.is_empty() {
            f.push((&rules::R_SND_5, None, "SendComplete with an empty chain".into()));
        }
        let mut partial_seen = false;
        for nbl in nbls.iter() {
            let Some(pos) = self.posts.iter().position(|r| r.id == nbl.id()) else {
                f.push((&rules::R_SND_5, Some(nbl.id()), "not an outstanding send of this connection".into()));
                continue;
            };
            let rec = self.posts[pos].clone();
            if rec.disconnect {
                f.push((&rules::R_DSC_5, Some(nbl.id()), "the disconnect NBL returned by SendComplete".into()));
            }
            if pos != 0 {
                f.push((&rules::R_SND_5, Some(nbl.id()), format!("completed ahead of {} earlier send(s)", pos)));
            }
            self.posts.remove(pos);
            self.check_done(&rec, nbl, &mut partial_seen, f);
            let done_to = self.posts.front().map_or(self.posted, |r| r.start);
            self.release(done_to);
        }
    }

    /// NdisTcpOffloadDisconnectComplete.
    pub(crate) fn on_disconnect_complete(&mut self, nbl: &NblChain, status: NdisStatus, f: &mut Vec<Finding>) {
        let id = nbl.front().map(|n| n.id());
        let Some(k) = self.discs.iter().position(|d| !d.completed && d.id == id) else {
            f.push((&rules::R_DSC_5, id, "not an outstanding disconnect of this connection".into()));
            return;
        };
        self.discs[k].completed = true;
        let d = self.discs[k].clone();
        let earlier = self.posts.iter().filter(|r| !r.disconnect).count();
        if d.kind == DisconnectKind::Abortive {
            if earlier > 0 {
                f.push((&rules::R_DSC_4, id, format!("{earlier} send(s) still outstanding")));
            }
            if status != NdisStatus::Success && status != NdisStatus::RequestAborted {
                f.push((&rules::R_DSC_4, id, format!("abortive disconnect completed {status}")));
            }
            return;
        }
        if earlier > 0 {
            f.push((&rules::R_DSC_3, id, format!("{earlier} earlier send(s) still outstanding")));
        }
        // Its own data, if it rode the stream: checked like a send.
        let own = self.posts.iter().position(|r| r.disconnect && Some(r.id) == id);
        let rec = own.map(|p| self.posts.remove(p).expect("position is valid"));
        if status == NdisStatus::Success {
            if self.acked <= d.fin_at {
                f.push((&rules::R_DSC_3, id, "SUCCESS before the FIN was acknowledged".into()));
            }
        } else if let Err(why) = status_ok_for_failure(self, status) {
            f.push((&rules::R_DSC_3, id, why));
        }
        if let (Some(rec), Some(n)) = (rec, nbl.front()) {
            let mut partial = false;
            let failed = self.failed;
            self.check_done(&rec, n, &mut partial, f);
            self.failed = failed || status != NdisStatus::Success;
            let done_to = self.posts.front().map_or(self.posted, |r| r.start);
            self.release(done_to);
        }
    }

    /// Terminate completed: nothing may be outstanding (R-SND-13).
    pub(crate) fn on_terminated(&self, f: &mut Vec<Finding>) {
        if let Some(r) = self.posts.front() {
            f.push((&rules::R_SND_13, Some(r.id), format!("{} send(s) outstanding at terminate", self.posts.len())));
        }
        if self.discs.iter().any(|d| !d.completed) {
            f.push((&rules::R_SND_13, None, "a disconnect outstanding at terminate".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_compare_by_address_or_content_and_release_in_order() {
        let a = Mdl::from_bytes(b"hello world".to_vec());
        let b = Mdl::from_bytes(b"0123456789".to_vec());
        let mut p = Pieces::default();
        p.push(&a, 6, 5); // "world"
        p.push(&b, 0, 10);
        assert_eq!(p.len(), 15);
        // The very bytes (by address), equal bytes elsewhere, and across the piece boundary.
        assert!(p.eq_at(0, &a.bytes()[6..11]));
        assert!(p.eq_at(0, b"world"));
        assert!(p.eq_at(3, b"ld0123"));
        assert!(!p.eq_at(3, b"ld0124"));
        assert!(!p.eq_at(14, b"9x"), "beyond what is held");
        // A host that writes into its buffer afterwards gets its own copy: the verifier's
        // view keeps the bytes as posted.
        let mut a2 = a.clone();
        a2.bytes_mut()[6] = b'W';
        assert!(p.eq_at(0, b"world"));
        assert!(!a2.same_memory(&a));
        p.drop_front(7);
        assert_eq!(p.len(), 8);
        assert!(p.eq_at(0, b"23456789"));
        p.truncate(3);
        assert!(p.eq_at(0, b"234"));
        assert!(!p.eq_at(0, b"2345"));
        p.drop_front(3);
        assert_eq!(p.len(), 0);
        assert!(p.pieces.is_empty());
    }
}
