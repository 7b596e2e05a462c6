//! The send half of [`TcpConn`]: segmentation of the host's send stream, acknowledgement
//! processing, retransmission (RFC 6298 timer, RFC 5681/6582 fast retransmit and NewReno
//! recovery, RFC 6675 SACK recovery, RFC 8985 RACK-TLP), congestion control, zero-window
//! persist and our FIN.
//!
//! ```text
//!   host sends ─► SendInput (the host's NBLs as one stream, offsets from 0)
//!                    │ send_stream / send_bytes             ▲ send_acked(offset)
//!                    ▼                                      │
//!   transmit: window ∧ cwnd ∧ Nagle/SWS ─► segments ─► peer ─► ACK ─► on_ack
//!   timers:   RTO (go-back-N from SND.UNA, backoff) · persist (zero-window probes)
//!             TLP (tail probe, 2·SRTT) · RACK reordering window (time-based loss)
//! ```
//!
//! Offsets are u64 and never wrap; `TxState::base` turns them into sequence numbers here
//! and nowhere else.

use std::time::Duration;

use super::{ConnContext, RttProbe, TcpConn, TxState};
use crate::contract::SendStream;
use crate::ndis::{TcpConnectionState, TcpUploadReason};
use crate::tcp::sender::{self, Persist, SendState};
use crate::tcp::{Congestion, Rack, RttEstimator, Scoreboard, SeqNum, DUP_THRESH};
use crate::time::Instant;
use crate::wire::{flags, Segment};

/// The longest RTO and persist interval.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl TxState {
    fn new(base: SeqNum, smss: u32, cx: &ConnContext<'_>) -> TxState {
        let rtt = RttEstimator::new(cx.cfg.rto_min, MAX_BACKOFF, Duration::from_millis(1));
        TxState {
            base,
            una: 0,
            nxt: 0,
            max: 0,
            fin_out: false,
            fin_sent: false,
            fin_acked: false,
            cc: Congestion::new(cx.cfg.congestion, smss),
            persist: Persist::new(rtt.rto(), MAX_BACKOFF),
            rtt,
            sb: Scoreboard::new(),
            rack: Rack::new(),
            rack_at: None,
            rto_at: None,
            persist_at: None,
            probes_unanswered: 0,
            dupacks: 0,
            recover: None,
            rto_recovery: false,
            tlp_at: None,
            tlp_out: false,
            rtt_probe: None,
            retries: 0,
        }
    }

    fn seq(&self, off: u64) -> SeqNum {
        self.base.plus(off as u32)
    }

    /// Karn's rule for stream bytes [a, b) sent again: a timed segment sent twice gives no
    /// sample; one behind a resent hole is sampled only by a SACK block (its cumulative ACK
    /// would time the repair).
    fn karn_resent(&mut self, a: u64, b: u64) {
        match self.rtt_probe {
            Some(p) if a < p.end && b > p.start => self.rtt_probe = None,
            Some(ref mut p) if a < p.start => p.cum_ok = false,
            _ => {}
        }
    }

    /// The RTT sample without timestamps: the timed segment cumulatively acknowledged (when
    /// nothing before it was resent), or covered by a SACK block (it arrived; the SACK
    /// answers its arrival, as Linux samples SACKed segments).
    fn karn_sample(&mut self, now: Instant, blocks: &[(u64, u64)]) -> Option<Duration> {
        let p = self.rtt_probe?;
        let acked = self.una >= p.end && p.cum_ok;
        let sacked = blocks.iter().any(|&(l, r)| l <= p.start && p.end <= r);
        if self.una >= p.end || sacked {
            self.rtt_probe = None;
        }
        (acked || sacked).then(|| now.saturating_duration_since(p.sent))
    }

    /// Bytes presumed in the network (RFC 6675 pipe when the peer SACKs, else sent minus
    /// acknowledged from where sending resumes).
    fn in_flight(&self, smss: u64) -> u64 {
        if self.nxt < self.max {
            // Resending from SND.UNA after a timeout: what is out is what went out again
            // (everything sent before the timeout is presumed lost, RFC 5681 §3.1).
            self.nxt - self.una
        } else if self.sb.has_sacks() {
            self.sb.pipe(smss)
        } else {
            self.nxt - self.una
        }
    }
}

impl TcpConn {
    /// The segment size the send side uses: the peer's MSS, less the timestamp option we
    /// put in every segment, never above our own.
    fn send_mss(&self, cx: &ConnContext<'_>) -> u64 {
        let opts = if self.ts.is_some() { 12 } else { 0 };
        u64::from(self.peer_mss.min(cx.cfg.mss).saturating_sub(opts).max(1))
    }

    /// The send half, allocated on first use; SND.UNA is offset 0.
    fn tx_state(&mut self, cx: &ConnContext<'_>) -> Box<TxState> {
        match self.tx.take() {
            Some(t) => t,
            None => {
                let smss = self.send_mss(cx) as u32;
                Box::new(TxState::new(self.snd_una, smss, cx))
            }
        }
    }

    /// The send half in one line (SND.UNA/NXT/MAX as offsets, windows, timers), for
    /// diagnosing a stuck run.
    pub fn describe_send(&self) -> String {
        match self.tx.as_deref() {
            None => "no send half".into(),
            Some(t) => format!(
                "una={} nxt={} max={} fin_out={} fin_acked={} snd_wnd={} cwnd={} rto_at={:?} persist_at={:?} retries={} dupacks={} recover={:?}",
                t.una,
                t.nxt,
                t.max,
                t.fin_out,
                t.fin_acked,
                self.snd_wnd,
                t.cc.cwnd(),
                t.rto_at,
                t.persist_at,
                t.retries,
                t.dupacks,
                t.recover
            ),
        }
    }

    /// The congestion window, the peer's window and the bytes in flight (None before the
    /// first send): what an attacker would try to inflate.
    pub fn send_windows(&self) -> Option<(u32, u32, u64)> {
        self.tx.as_deref().map(|t| (t.cc.cwnd(), self.snd_wnd, t.max - t.una))
    }

    /// Bytes of send data not yet acknowledged, and whether the FIN is outstanding.
    pub fn send_outstanding(&self) -> (u64, bool) {
        self.tx.as_ref().map_or((0, false), |t| (t.max - t.una, t.fin_sent && !t.fin_acked))
    }

    /// Sends what the window, the congestion window, Nagle and SWS avoidance allow of the
    /// host's send stream, then our FIN when the host disconnected gracefully and every
    /// byte before it went out. Arms the retransmission or the persist timer.
    pub(crate) fn transmit(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        if self.stopped || self.state == TcpConnectionState::Closed {
            return;
        }
        let s = cx.delivery.send_stream(self.id);
        if s.closed || (self.tx.is_none() && s.posted == 0 && !s.fin) {
            return;
        }
        let mut t = self.tx_state(cx);
        self.transmit_with(now, &mut t, s, cx);
        self.tx = Some(t);
    }

    fn transmit_with(&mut self, now: Instant, t: &mut TxState, s: SendStream, cx: &mut ConnContext<'_>) {
        let mss = self.send_mss(cx);
        let mut window_blocked;
        // A timeout moved `nxt` back: resend [nxt, max) first (go-back-N), then new data.
        loop {
            let flight = t.in_flight(mss);
            let edge = t.una + u64::from(self.snd_wnd);
            let wnd_room = edge.saturating_sub(t.nxt);
            // RFC 3042 limited transmit: up to two new segments on the first two dup ACKs.
            let limited = if t.recover.is_none() && (1..DUP_THRESH).contains(&u64::from(t.dupacks)) {
                u64::from(t.dupacks) * mss
            } else {
                0
            };
            let cwnd_room = (u64::from(t.cc.cwnd()) + limited).saturating_sub(flight);
            let usable = wnd_room.min(cwnd_room);
            let len = if t.nxt < t.max {
                (t.max - t.nxt).min(mss).min(usable)
            } else {
                sender::next_segment(SendState {
                    unsent: s.posted.saturating_sub(t.nxt),
                    usable,
                    mss,
                    max_window: u64::from(self.max_snd_wnd),
                    in_flight: t.max - t.una,
                    nagle: cx.cfg.nagle,
                    override_timer: false,
                })
            };
            if len == 0 {
                window_blocked = t.nxt < s.posted && wnd_room == 0;
                break;
            }
            // GSO: more full segments in the same write, as far as the windows and the data go
            // (whole segments only, so that every one the kernel cuts is full-sized).
            let len = if len == mss && cx.cfg.gso_segs > 1 {
                let cap = (u64::from(cx.cfg.gso_segs) * mss).min(60_000 / mss * mss);
                let avail = if t.nxt < t.max { t.max - t.nxt } else { s.posted - t.nxt };
                (usable.min(avail).min(cap) / mss * mss).max(len)
            } else {
                len
            };
            let end = t.nxt + len;
            // The FIN rides the segment that carries the last byte, if it fits the window.
            let fin = s.fin && end == s.posted && !t.fin_out && wnd_room > len;
            let at = t.nxt;
            self.send_data(now, t, at, len, s.posted, fin, cx);
            t.nxt = end;
            if end > t.max {
                if t.rtt_probe.is_none() && self.ts.is_none() {
                    t.rtt_probe = Some(RttProbe { start: at.max(t.max), end, sent: now, cum_ok: true });
                }
                t.max = end;
                t.sb.on_send(end);
            }
        }
        // A FIN alone: every byte is out and the window has room for its sequence number
        // (A42: it waits for window like data).
        if s.fin && !t.fin_out && t.nxt == s.posted && t.nxt == t.max {
            if t.una + u64::from(self.snd_wnd) > t.nxt {
                let seq = t.seq(t.nxt);
                self.update_window(now, cx);
                self.emit(now, cx, seq, flags::FIN | flags::ACK);
                self.fin_went_out(t);
            } else {
                window_blocked = true;
            }
        }
        self.arm_timers(now, t);
        if window_blocked && t.max == t.una && (!t.fin_sent || t.fin_acked) && t.persist_at.is_none() {
            t.persist_at = Some(now + t.persist.interval());
        }
    }

    fn fin_went_out(&mut self, t: &mut TxState) {
        t.fin_out = true;
        if !t.fin_sent {
            t.fin_sent = true;
            let after_fin = t.seq(t.max).plus(1);
            if after_fin.gt(self.snd_nxt) {
                self.snd_nxt = after_fin;
            }
            self.state = match self.state {
                TcpConnectionState::Established => TcpConnectionState::FinWait1,
                TcpConnectionState::CloseWait => TcpConnectionState::LastAck,
                st => st,
            };
        }
    }

    /// One data segment for stream bytes [off, off + len), read from the host's MDLs through
    /// the delivery layer (R-SND-2); PSH on the last segment of each send NBL (R-SND-11).
    #[allow(clippy::too_many_arguments)]
    fn send_data(
        &mut self,
        now: Instant,
        t: &mut TxState,
        off: u64,
        len: u64,
        posted: u64,
        fin: bool,
        cx: &mut ConnContext<'_>,
    ) {
        let end = off + len;
        let psh = end == posted || cx.delivery.send_nbl_end(self.id, off, end).is_some();
        let mut fl = flags::ACK;
        if psh {
            fl |= flags::PSH;
        }
        if fin {
            fl |= flags::FIN;
        }
        let seq = t.seq(off);
        if off < t.max {
            self.counters.retransmitted += 1;
            t.karn_resent(off, end.min(t.max));
        }
        // A data segment carries the ACK and the window too: the window as it stands now (the
        // ACK it replaces would have moved the right edge).
        self.update_window(now, cx);
        let mss = self.send_mss(cx);
        let gso = if len > mss { mss as u16 } else { 0 };
        let n = self.emit_seg(now, cx, seq, fl, Some((off, len as usize)), gso);
        debug_assert_eq!(n as u64, len, "the send stream holds what it says");
        t.rack.on_send(now, off, end, off < t.max);
        self.counters.sent_bytes += n as u64;
        // SND.MAX only moves forward (after a re-offload it may already be past what this
        // incarnation sent).
        if end > t.max && t.seq(end).gt(self.snd_nxt) {
            self.snd_nxt = t.seq(end);
        }
        if fl.contains(flags::FIN) {
            t.max = t.max.max(end);
            self.fin_went_out(t);
        }
    }

    fn arm_timers(&mut self, now: Instant, t: &mut TxState) {
        let outstanding = t.max > t.una || (t.fin_sent && !t.fin_acked);
        if outstanding {
            if t.rto_at.is_none() {
                t.rto_at = Some(now + t.rtt.rto());
            }
            t.persist_at = None;
            // RFC 8985 §7.2: a probe timeout of two smoothed RTTs (plus the peer's delayed
            // ACK when one segment is out), outside recovery, once an RTT is known, and never
            // after the retransmission timeout.
            if let (None, false, Some(srtt)) = (t.recover, t.tlp_out, t.rtt.srtt()) {
                let mut pto = (srtt * 2).max(Duration::from_millis(10));
                if t.max - t.una <= self.send_mss_hint(t) {
                    pto += Duration::from_millis(200);
                }
                let at = now + pto;
                if t.rto_at.is_none_or(|r| at < r) {
                    t.tlp_at = Some(at);
                }
            }
        } else {
            t.rto_at = None;
            t.tlp_at = None;
        }
    }

    /// One segment's size for the probe timeout's single-segment case.
    fn send_mss_hint(&self, _t: &TxState) -> u64 {
        u64::from(self.peer_mss.saturating_sub(if self.ts.is_some() { 12 } else { 0 }).max(1))
    }

    /// The tail loss probe (RFC 8985 §7.3): new data if the peer's window allows one segment of
    /// it, else the last segment sent again; the retransmission timer restarts.
    pub(super) fn on_tlp(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        let Some(mut t) = self.tx.take() else { return };
        t.tlp_at = None;
        let s = cx.delivery.send_stream(self.id);
        if s.closed || t.recover.is_some() || t.max == t.una {
            self.tx = Some(t);
            return;
        }
        let mss = self.send_mss(cx);
        let edge = t.una + u64::from(self.snd_wnd);
        let new = s.posted.saturating_sub(t.max).min(mss).min(edge.saturating_sub(t.max));
        t.tlp_out = true;
        self.counters.tail_probes += 1;
        if new > 0 && t.nxt == t.max {
            let at = t.max;
            self.send_data(now, &mut t, at, new, s.posted, false, cx);
            t.nxt = at + new;
            t.max = t.nxt;
            t.sb.on_send(t.max);
        } else {
            let len = (t.max - t.una).min(mss);
            let at = t.max - len;
            self.send_data(now, &mut t, at, len, s.posted, false, cx);
        }
        t.rto_at = Some(now + t.rtt.rto());
        self.tx = Some(t);
    }

    /// Acknowledgement processing for an acceptable segment (RFC 9293 §3.10.7.4 fifth check;
    /// RFC 5961 §5 already refused ACKs of unsent or too old data): SND.UNA, the send window,
    /// RTT, congestion window, duplicate ACKs and recovery; then the NBLs this completes.
    pub(super) fn on_ack(&mut self, now: Instant, seg: &Segment<'_>, payload_len: usize, cx: &mut ConnContext<'_>) {
        let ack = seg.ack;
        let wnd = u32::from(seg.window) << self.snd_wscale;
        let window_changed = wnd != self.snd_wnd;
        // SND.WL1/WL2: only a newer segment may set the window.
        if self.snd_wl1.lt(seg.seq) || (self.snd_wl1 == seg.seq && self.snd_wl2.le(ack)) {
            self.snd_wnd = wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
        }
        self.max_snd_wnd = self.max_snd_wnd.max(wnd);
        let advanced = ack.gt(self.snd_una);
        if advanced {
            self.snd_una = ack;
        }
        let Some(mut t) = self.tx.take() else { return };
        t.probes_unanswered = 0;
        let mss = self.send_mss(cx);
        // SND.UNA as an offset; past the data it is our FIN.
        let acked_to = u64::from(ack.diff(t.base).max(0) as u32);
        let fin_acked_now = t.fin_sent && !t.fin_acked && acked_to > t.max;
        // After an upload and a re-offload the peer may acknowledge bytes the previous
        // incarnation sent and this one has not sent again yet (up to SND.MAX, which the ACK
        // checks allow): they were posted again, and the peer has them.
        let posted = cx.delivery.send_stream(self.id).posted;
        let data_to = if t.fin_sent { acked_to.min(t.max) } else { acked_to.min(posted) };
        if data_to > t.max {
            t.max = data_to;
            t.sb.on_send(data_to);
        }
        let blocks = self.sack_blocks(seg, &t);
        if data_to > t.una || fin_acked_now {
            let newly = data_to - t.una;
            t.una = data_to;
            t.nxt = t.nxt.max(t.una);
            t.sb.on_ack(t.una, &blocks);
            t.rack.on_acked(now, t.una);
            for &(l, r) in &blocks {
                t.rack.on_delivered(now, l, r, false);
            }
            t.retries = 0;
            t.dupacks = 0;
            // RTT: the echoed timestamp (RFC 7323 §4.1), else Karn's single timed segment.
            let sample = match (self.ts, seg.options.timestamps) {
                (Some(_), Some((_, ecr))) if ecr != 0 => {
                    let ms = self.tsval(now).wrapping_sub(ecr);
                    (ms < 60_000).then(|| Duration::from_millis(u64::from(ms.max(1))))
                }
                _ => t.karn_sample(now, &blocks),
            };
            if let Some(r) = sample {
                t.rtt.sample(r);
            }
            match t.recover {
                Some(r) if t.una >= r => {
                    // Full acknowledgement: recovery ends (RFC 6582 §3.2 step 3).
                    t.recover = None;
                    t.rto_recovery = false;
                }
                // After a timeout the window grows again by slow start while the data is sent
                // again from SND.UNA (RFC 5681 §3.1).
                Some(_) if t.rto_recovery => t.cc.on_ack(now, newly as u32, t.rtt.srtt()),
                Some(_) => {
                    // Partial acknowledgement: the next hole is lost too (NewReno), or the
                    // scoreboard says what to resend (SACK).
                    if !t.sb.has_sacks() && t.una < t.max {
                        let len = (t.max - t.una).min(mss);
                        let posted = cx.delivery.send_stream(self.id).posted;
                        let una = t.una;
                        self.send_data(now, &mut t, una, len, posted, false, cx);
                    }
                }
                None => t.cc.on_ack(now, newly as u32, t.rtt.srtt()),
            }
            t.rto_at = None;
            t.tlp_at = None;
            t.tlp_out = false;
            t.persist.reset(t.rtt.rto());
            if fin_acked_now {
                t.fin_acked = true;
            }
            self.tx = Some(t);
            let upto = data_to + u64::from(fin_acked_now);
            let _ = cx.delivery.send_acked(now, self.id, upto, cx.host);
            if fin_acked_now {
                self.on_fin_acked(now, cx);
            }
            if self.stopped {
                return;
            }
            let Some(mut t) = self.tx.take() else { return };
            self.rack_detect(now, &mut t);
            self.recover_sack(now, &mut t, cx);
            let s = cx.delivery.send_stream(self.id);
            if !s.closed {
                self.transmit_with(now, &mut t, s, cx);
            }
            self.tx = Some(t);
            return;
        }
        t.sb.on_ack(t.una, &blocks);
        for &(l, r) in &blocks {
            t.rack.on_delivered(now, l, r, false);
        }
        if self.ts.is_none() {
            if let Some(r) = t.karn_sample(now, &blocks) {
                t.rtt.sample(r);
            }
        }
        let dup = payload_len == 0
            && !seg.has(flags::FIN)
            && !window_changed
            && ack == self.snd_una
            && (t.max > t.una || (t.fin_sent && !t.fin_acked));
        if dup {
            t.dupacks += 1;
            let lost = t.dupacks as u64 >= DUP_THRESH || t.sb.is_lost(t.una, mss);
            if lost && t.recover.is_none() {
                // Fast retransmit (RFC 5681 §3.2, RFC 6675 §5): halve, resend the first hole.
                let flight = (t.max - t.una) as u32;
                t.cc.on_loss(flight);
                t.recover = Some(t.max);
                let len = (t.max - t.una).min(mss);
                if len > 0 {
                    let posted = cx.delivery.send_stream(self.id).posted;
                    let una = t.una;
                    self.send_data(now, &mut t, una, len, posted, false, cx);
                    t.sb.on_retransmit(una, una + len);
                } else if t.fin_sent {
                    let seq = t.seq(t.max);
                    self.emit(now, cx, seq, flags::FIN | flags::ACK);
                }
            }
        }
        self.rack_detect(now, &mut t);
        self.recover_sack(now, &mut t, cx);
        let s = cx.delivery.send_stream(self.id);
        if !s.closed {
            // A window that opened, or limited transmit.
            self.transmit_with(now, &mut t, s, cx);
        }
        self.tx = Some(t);
    }

    /// SACK blocks of `seg` as stream offsets within what was sent.
    fn sack_blocks(&self, seg: &Segment<'_>, t: &TxState) -> Vec<(u64, u64)> {
        let Some((blocks, n)) = seg.options.sack else { return Vec::new() };
        let una = t.seq(t.una);
        blocks[..usize::from(n).min(4)]
            .iter()
            .filter_map(|&(l, r)| {
                let (l, r) = (SeqNum(l).diff(una), SeqNum(r).diff(una));
                (l >= 0 && r > l).then(|| (t.una + l as u64, (t.una + r as u64).min(t.max)))
            })
            .filter(|(l, r)| l < r)
            .collect()
    }

    /// RFC 6675 §5 step (C): in recovery, resend lost holes while the pipe has room.
    fn recover_sack(&mut self, now: Instant, t: &mut TxState, cx: &mut ConnContext<'_>) {
        if t.recover.is_none() || !(t.sb.has_sacks() || t.sb.has_rack_lost()) {
            return;
        }
        let mss = self.send_mss(cx);
        let posted = cx.delivery.send_stream(self.id).posted;
        let mut budget = 64;
        while budget > 0 && t.sb.pipe(mss) < u64::from(t.cc.cwnd()) {
            let Some((a, b)) = t.sb.next_lost(mss) else { break };
            self.send_data(now, t, a, b - a, posted, false, cx);
            t.sb.on_retransmit(a, b);
            budget -= 1;
        }
    }

    /// RACK loss detection (RFC 8985 §6.2): segments sent before the most recently
    /// delivered one, and older than its RTT plus the reordering window, are lost; they go
    /// to the scoreboard (sent again even when they were retransmissions) and start
    /// recovery if none is under way. Arms the reordering timer for those that may be lost
    /// later. Runs only while the peer reports holes (SACK) or the timer is set: in-order
    /// delivery leaves nothing to judge.
    fn rack_detect(&mut self, now: Instant, t: &mut TxState) {
        if t.sb.has_sacks() || t.rack_at.is_some() {
            self.rack_judge(now, t);
        }
    }

    fn rack_judge(&mut self, now: Instant, t: &mut TxState) {
        let srtt = t.rtt.srtt().unwrap_or(t.rtt.rto());
        let (lost, timer) = t.rack.detect_lost(now, srtt);
        t.rack_at = timer;
        if lost.is_empty() {
            return;
        }
        for &(a, b) in &lost {
            t.sb.mark_lost(a, b);
        }
        if t.sb.has_rack_lost() {
            self.counters.rack_losses += 1;
            if t.recover.is_none() {
                // A loss starts recovery as three duplicate ACKs would (RFC 8985 §6.2 step 5,
                // RFC 6675 §5).
                t.cc.on_loss((t.max - t.una) as u32);
                t.recover = Some(t.max);
            }
        }
    }

    /// The RACK reordering timer expired: judge the segments again and resend the lost.
    pub(super) fn on_rack_timer(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        let Some(mut t) = self.tx.take() else { return };
        t.rack_at = None;
        if t.max > t.una {
            self.rack_judge(now, &mut t);
            self.recover_sack(now, &mut t, cx);
        }
        self.tx = Some(t);
    }

    /// The retransmission timer expired (RFC 6298 §5.4–5.7): back off, collapse the window,
    /// and resend from SND.UNA; after `max_retransmits` in a row, upload with
    /// TimeoutExpiration.
    pub(super) fn on_rto(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        let Some(mut t) = self.tx.take() else { return };
        t.rto_at = None;
        if t.retries >= cx.cfg.max_retransmits {
            self.tx = Some(t);
            self.stop_rto();
            self.upload(now, cx, TcpUploadReason::TimeoutExpiration);
            return;
        }
        t.retries += 1;
        t.rtt.back_off();
        let flight = (t.max - t.una) as u32;
        t.cc.on_timeout(flight);
        t.sb.on_timeout();
        t.rack.clear_in_flight();
        t.rack_at = None;
        t.recover = Some(t.max);
        t.rto_recovery = true;
        t.tlp_at = None;
        t.dupacks = 0;
        t.rtt_probe = None;
        t.nxt = t.una;
        t.fin_out = false;
        tracing::debug!(conn = %self.id, retries = t.retries, una = t.una, max = t.max, rto = ?t.rtt.rto(), srtt = ?t.rtt.srtt(), cwnd = t.cc.cwnd(), "retransmission timeout");
        let s = cx.delivery.send_stream(self.id);
        if s.closed {
            self.tx = Some(t);
            return;
        }
        self.transmit_with(now, &mut t, s, cx);
        if t.rto_at.is_none() && (t.max > t.una || (t.fin_sent && !t.fin_acked)) {
            t.rto_at = Some(now + t.rtt.rto());
        }
        self.tx = Some(t);
    }

    /// The persist timer expired: probe the zero window with a segment the peer must answer
    /// (SEG.SEQ = SND.UNA − 1, as Linux does), back off; after `max_retransmits` probes
    /// no ACK answered, upload with TimeoutExpiration.
    pub(super) fn on_persist(&mut self, now: Instant, cx: &mut ConnContext<'_>) {
        let Some(mut t) = self.tx.take() else { return };
        t.persist_at = None;
        if self.snd_wnd > 0 {
            let s = cx.delivery.send_stream(self.id);
            self.transmit_with(now, &mut t, s, cx);
            self.tx = Some(t);
            return;
        }
        if t.probes_unanswered > cx.cfg.max_retransmits.max(8) {
            self.tx = Some(t);
            self.stop_rto();
            self.upload(now, cx, TcpUploadReason::TimeoutExpiration);
            return;
        }
        t.probes_unanswered += 1;
        t.persist.probed();
        self.counters.window_probes += 1;
        let seq = SeqNum(self.snd_una.0.wrapping_sub(1));
        self.emit(now, cx, seq, flags::ACK);
        t.persist_at = Some(now + t.persist.interval());
        self.tx = Some(t);
    }
}
