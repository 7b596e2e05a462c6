//! `NET_BUFFER_LIST` / `NET_BUFFER` / `MDL` in safe Rust (spec §2).
//!
//! An [`Mdl`] owns one segment of memory; a [`NetBuffer`] is an MDL chain plus the four
//! geometry fields (`DataOffset`, `DataLength`, `CurrentMdl`, `CurrentMdlOffset`); a
//! [`NetBufferList`] carries exactly one `NetBuffer` (every chimney receive NBL does, R-POST-1,
//! R-IND-3), a `Status` and the `NetBufferListInfo` slots. Ownership in NDIS travels with the
//! NBL pointer; here it travels with the value, so "who may touch it" is the borrow checker's job.
//!
//! The NBL `Next` link is an [`NblChain`]: every NBL lives in one heap node for its whole life
//! and chains relink those nodes, so appending a chain and splitting off its head are O(1) and
//! allocation-free (the target's posted FIFO and completion batches never allocate).

use std::collections::LinkedList;
use std::sync::Arc;

use super::status::NdisStatus;

/// Identity of an NBL, standing in for its pointer value. Allocators tag the owner pool in the
/// top 16 bits so a verifier can tell host NBLs (posts) from target NBLs (indications).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NblId(pub u64);

/// Which pool an NBL was allocated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum PoolTag {
    /// The host stack's NBLs: receive posts, BufferedData handed over at offload.
    Host = 1,
    /// The offload target's chimney pool: receive indications, BufferedData returned at terminate.
    Target = 2,
}

impl NblId {
    /// The `serial`-th NBL of a pool.
    pub const fn new(pool: PoolTag, serial: u64) -> NblId {
        NblId(((pool as u64) << 48) | (serial & 0xFFFF_FFFF_FFFF))
    }

    /// The pool this NBL came from, if the tag is one we know.
    pub fn pool(self) -> Option<PoolTag> {
        match self.0 >> 48 {
            1 => Some(PoolTag::Host),
            2 => Some(PoolTag::Target),
            _ => None,
        }
    }
}

impl core::fmt::Display for NblId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let tag = match self.pool() {
            Some(PoolTag::Host) => "h",
            Some(PoolTag::Target) => "t",
            None => "?",
        };
        write!(f, "nbl:{}{}", tag, self.0 & 0xFFFF_FFFF_FFFF)
    }
}

/// Misuse of the buffer API (never caused by packet bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BufferError {
    /// `advance_data_start(n)` with `n` greater than `DataLength`.
    AdvancePastEnd {
        /// Bytes asked.
        delta: usize,
        /// DataLength at the time.
        data_length: usize,
    },
    /// `retreat_data_start(n)` with `n` greater than `DataOffset` (we never allocate MDLs).
    RetreatPastStart {
        /// Bytes asked.
        delta: usize,
        /// DataOffset at the time.
        data_offset: usize,
    },
    /// A used data space that does not fit in the MDL chain.
    OutOfChain {
        /// End of the requested used space.
        end: usize,
        /// Bytes in the MDL chain.
        chain_len: usize,
    },
}

impl core::fmt::Display for BufferError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BufferError::AdvancePastEnd { delta, data_length } => {
                write!(f, "advance by {delta} bytes past DataLength {data_length}")
            }
            BufferError::RetreatPastStart { delta, data_offset } => {
                write!(f, "retreat by {delta} bytes past DataOffset {data_offset} (no MDL allocation)")
            }
            BufferError::OutOfChain { end, chain_len } => {
                write!(f, "used data space ends at {end}, MDL chain holds {chain_len}")
            }
        }
    }
}

impl std::error::Error for BufferError {}

/// A memory descriptor: one segment of resident memory (`ByteCount` = its length).
///
/// The memory is reference-counted and copied on write: a clone is another descriptor of
/// the same bytes (what the verifier keeps of a posted send, so that it can check what the
/// target reads without copying the host's data), and writing through either one first
/// gives it its own copy, so a clone always holds the bytes as they were when it was made.
#[derive(Clone, PartialEq, Eq)]
pub struct Mdl {
    bytes: Arc<Box<[u8]>>,
}

impl Mdl {
    /// A zero-filled segment of `byte_count` bytes.
    pub fn zeroed(byte_count: usize) -> Mdl {
        Mdl { bytes: Arc::new(vec![0; byte_count].into_boxed_slice()) }
    }

    /// A segment holding `bytes` (moved in, not copied).
    pub fn from_bytes(bytes: impl Into<Box<[u8]>>) -> Mdl {
        Mdl { bytes: Arc::new(bytes.into()) }
    }

    /// `ByteCount`: the bytes this MDL describes.
    pub fn byte_count(&self) -> usize {
        self.bytes.len()
    }

    /// The described memory.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The described memory, writable (copied first if another descriptor shares it).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let b: &mut Box<[u8]> = Arc::make_mut(&mut self.bytes);
        b
    }

    /// Whether `other` describes the very same memory (not merely equal bytes).
    pub fn same_memory(&self, other: &Mdl) -> bool {
        Arc::ptr_eq(&self.bytes, &other.bytes)
    }
}

impl core::fmt::Debug for Mdl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Mdl({} bytes)", self.bytes.len())
    }
}

/// A `NET_BUFFER`: an MDL chain and the geometry of its used data space (spec §2.2).
///
/// Invariant (checked by [`NetBuffer::invariant_holds`]): `data_offset` equals the bytes of
/// every MDL before `current_mdl` plus `current_mdl_offset`, and `data_offset + data_length`
/// is at most the chain's total bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetBuffer {
    mdl_chain: Vec<Mdl>,
    data_offset: usize,
    data_length: usize,
    current_mdl: usize,
    current_mdl_offset: usize,
}

impl NetBuffer {
    /// A net buffer whose used data space is the whole chain.
    pub fn new(mdl_chain: Vec<Mdl>) -> NetBuffer {
        let len = mdl_chain.iter().map(Mdl::byte_count).sum();
        let mut nb = NetBuffer { mdl_chain, data_offset: 0, data_length: len, current_mdl: 0, current_mdl_offset: 0 };
        nb.seek_current();
        nb
    }

    /// A net buffer whose used data space is `[data_offset, data_offset + data_length)` of the chain.
    pub fn with_used_space(
        mdl_chain: Vec<Mdl>,
        data_offset: usize,
        data_length: usize,
    ) -> Result<NetBuffer, BufferError> {
        let chain_len: usize = mdl_chain.iter().map(Mdl::byte_count).sum();
        let end = data_offset.saturating_add(data_length);
        if end > chain_len {
            return Err(BufferError::OutOfChain { end, chain_len });
        }
        let mut nb = NetBuffer { mdl_chain, data_offset, data_length, current_mdl: 0, current_mdl_offset: 0 };
        nb.seek_current();
        Ok(nb)
    }

    /// Points `current_mdl`/`current_mdl_offset` at the byte at `data_offset`, skipping MDLs
    /// that lie wholly in the unused space (and empty MDLs).
    fn seek_current(&mut self) {
        let mut before = 0;
        let mut idx = 0;
        while idx + 1 < self.mdl_chain.len() && before + self.mdl_chain[idx].byte_count() <= self.data_offset {
            before += self.mdl_chain[idx].byte_count();
            idx += 1;
        }
        self.current_mdl = idx;
        self.current_mdl_offset = self.data_offset - before;
    }

    /// `DataOffset`: bytes of unused data space before the used data.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// `DataLength`: bytes of used data space (for a posted receive request: free room).
    pub fn data_length(&self) -> usize {
        self.data_length
    }

    /// `CurrentMdl`: index in the MDL chain of the MDL where the used data starts.
    pub fn current_mdl(&self) -> usize {
        self.current_mdl
    }

    /// `CurrentMdlOffset`: offset of the first used byte inside the current MDL.
    pub fn current_mdl_offset(&self) -> usize {
        self.current_mdl_offset
    }

    /// The MDL chain (`MdlChain`).
    pub fn mdl_chain(&self) -> &[Mdl] {
        &self.mdl_chain
    }

    /// The MDL chain, writable: the bytes, not the geometry (a C view of a posted request
    /// points into this memory, `chimney-ffi`).
    pub fn mdl_chain_mut(&mut self) -> &mut [Mdl] {
        &mut self.mdl_chain
    }

    /// Total bytes described by the MDL chain.
    pub fn chain_len(&self) -> usize {
        self.mdl_chain.iter().map(Mdl::byte_count).sum()
    }

    /// Whether the four geometry fields agree with each other and with the chain.
    pub fn invariant_holds(&self) -> bool {
        let before: usize = self.mdl_chain.iter().take(self.current_mdl).map(Mdl::byte_count).sum();
        let cur_len = self.mdl_chain.get(self.current_mdl).map_or(0, Mdl::byte_count);
        before + self.current_mdl_offset == self.data_offset
            && self.current_mdl_offset <= cur_len
            && self.data_offset + self.data_length <= self.chain_len()
    }

    /// `NdisAdvanceNetBufferDataStart(nb, delta, FreeMdl = FALSE, NULL)` (spec §2.4): shrinks the used
    /// data space from the front, moving all four geometry fields. Nothing is freed.
    pub fn advance_data_start(&mut self, delta: usize) -> Result<(), BufferError> {
        if delta > self.data_length {
            return Err(BufferError::AdvancePastEnd { delta, data_length: self.data_length });
        }
        self.data_length -= delta;
        self.data_offset += delta;
        let mut rest = delta;
        // Walk forward from the current MDL: O(MDLs passed), not O(chain).
        while let Some(mdl) = self.mdl_chain.get(self.current_mdl) {
            let room = mdl.byte_count() - self.current_mdl_offset;
            if rest < room || (rest == room && self.current_mdl + 1 == self.mdl_chain.len()) {
                self.current_mdl_offset += rest;
                rest = 0;
                break;
            }
            rest -= room;
            self.current_mdl += 1;
            self.current_mdl_offset = 0;
        }
        if self.mdl_chain.is_empty() {
            self.current_mdl = 0;
            self.current_mdl_offset = 0;
        }
        debug_assert_eq!(rest, 0);
        Ok(())
    }

    /// Re-arms the net buffer over the same MDLs with used space `[data_offset, data_offset +
    /// data_length)` (pools recycling NBLs without allocating).
    pub fn reset_used_space(&mut self, data_offset: usize, data_length: usize) -> Result<(), BufferError> {
        let chain_len = self.chain_len();
        let end = data_offset.saturating_add(data_length);
        if end > chain_len {
            return Err(BufferError::OutOfChain { end, chain_len });
        }
        self.data_offset = data_offset;
        self.data_length = data_length;
        self.seek_current();
        Ok(())
    }

    /// `NdisRetreatNetBufferDataStart` without MDL allocation: grows the used space back into
    /// the unused space. A chimney target never retreats receive buffers; hosts may.
    pub fn retreat_data_start(&mut self, delta: usize) -> Result<(), BufferError> {
        if delta > self.data_offset {
            return Err(BufferError::RetreatPastStart { delta, data_offset: self.data_offset });
        }
        self.data_offset -= delta;
        self.data_length += delta;
        self.seek_current();
        Ok(())
    }

    /// Copies `src` into the used data space starting `pos` bytes after its start; returns the
    /// bytes written (bounded by `DataLength - pos`). Geometry is unchanged: this is how a
    /// target places payload before it calls [`NetBuffer::advance_data_start`].
    pub fn write_used(&mut self, pos: usize, src: &[u8]) -> usize {
        let room = self.data_length.saturating_sub(pos);
        let mut todo = &src[..src.len().min(room)];
        let written = todo.len();
        let mut skip = self.current_mdl_offset + pos;
        let mut idx = self.current_mdl;
        while !todo.is_empty() {
            let Some(mdl) = self.mdl_chain.get_mut(idx) else {
                break;
            };
            let len = mdl.byte_count();
            if skip >= len {
                skip -= len;
                idx += 1;
                continue;
            }
            let n = (len - skip).min(todo.len());
            mdl.bytes_mut()[skip..skip + n].copy_from_slice(&todo[..n]);
            todo = &todo[n..];
            skip = 0;
            idx += 1;
        }
        written - todo.len()
    }

    /// The bytes of the data space `[start, start + len)` (offsets from the chain's first byte),
    /// as the MDL segments that hold them.
    pub fn slices(&self, start: usize, len: usize) -> impl Iterator<Item = &[u8]> + '_ {
        self.mdl_pieces(start, len).map(|(mdl, at, n)| &mdl.bytes()[at..at + n])
    }

    /// The chain's bytes `[start, start + len)` (offsets from the chain's beginning, like
    /// [`NetBuffer::slices`]) as (MDL, offset in it, length) pieces, in order.
    pub fn mdl_pieces(&self, start: usize, len: usize) -> impl Iterator<Item = (&Mdl, usize, usize)> + '_ {
        let mut skip = start;
        let mut left = len;
        self.mdl_chain.iter().filter_map(move |mdl| {
            let total = mdl.byte_count();
            if left == 0 {
                return None;
            }
            if skip >= total {
                skip -= total;
                return None;
            }
            let n = (total - skip).min(left);
            let piece = (mdl, skip, n);
            skip = 0;
            left -= n;
            Some(piece)
        })
    }

    /// The used space `[pos, pos + len)` (offsets from the data start, like
    /// [`NetBuffer::write_used`], clipped to `DataLength`) as writable MDL segments: where a
    /// driver reads payload straight into a posted buffer.
    pub fn used_slices_mut(&mut self, pos: usize, len: usize) -> impl Iterator<Item = &mut [u8]> + '_ {
        let mut left = len.min(self.data_length.saturating_sub(pos));
        let mut skip = self.current_mdl_offset + pos;
        self.mdl_chain.iter_mut().skip(self.current_mdl).filter_map(move |mdl| {
            let b = mdl.bytes_mut();
            if left == 0 {
                return None;
            }
            if skip >= b.len() {
                skip -= b.len();
                return None;
            }
            let n = (b.len() - skip).min(left);
            let s = &mut b[skip..skip + n];
            skip = 0;
            left -= n;
            Some(s)
        })
    }

    /// Copies the data space `[start, start + len)` into `out` (appending).
    pub fn copy_out(&self, start: usize, len: usize, out: &mut Vec<u8>) {
        for s in self.slices(start, len) {
            out.extend_from_slice(s);
        }
    }
}

/// `NET_BUFFER_LIST_INFO` slot ids the chimney receive path uses (spec §2.5). Slots are shared with
/// other uses (checksum, LSO), so the target reads the host's values before it writes slot 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
#[non_exhaustive]
pub enum NblInfoId {
    /// Slot 0 (aliases `TcpIpChecksumNetBufferListInfo`): bytes the target placed/sent.
    TcpOffloadBytesTransferred = 0,
    /// Slot 2 (aliases `TcpLargeSendNetBufferListInfo`): non-zero = non-push receive request.
    TcpReceiveNoPush = 2,
    /// Slot 17 (NDIS 6.20+, inferred by counting the enum): bytes the host pre-filled.
    TcpReceiveBytesTransferred = 17,
}

/// `MaxNetBufferListInfo` in our model.
pub const NBL_INFO_SLOTS: usize = 20;

/// A `NET_BUFFER_LIST`: one `NET_BUFFER` (the shape of every chimney receive NBL), or several
/// in order (a send request may carry any number: [`NetBufferList::with_net_buffers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetBufferList {
    id: NblId,
    net_buffer: NetBuffer,
    /// The NBs after the first (empty, allocating nothing, for a one-NB NBL).
    more: Vec<NetBuffer>,
    /// `Status`: written by the owner before handing the NBL back.
    pub status: NdisStatus,
    info: [usize; NBL_INFO_SLOTS],
    /// `MiniportReserved`: the target's scratch while it owns the NBL.
    pub miniport_reserved: [usize; 2],
    /// `ProtocolReserved`: the host's scratch, untouched by the target.
    pub protocol_reserved: [usize; 4],
}

impl NetBufferList {
    /// An NBL with identity `id` over `net_buffer`; status SUCCESS, info slots zero.
    pub fn new(id: NblId, net_buffer: NetBuffer) -> NetBufferList {
        NetBufferList {
            id,
            net_buffer,
            more: Vec::new(),
            status: NdisStatus::Success,
            info: [0; NBL_INFO_SLOTS],
            miniport_reserved: [0; 2],
            protocol_reserved: [0; 4],
        }
    }

    /// An NBL over `first` and then `rest`, in order (`FirstNetBuffer` and its `Next` links).
    pub fn with_net_buffers(id: NblId, first: NetBuffer, rest: Vec<NetBuffer>) -> NetBufferList {
        let mut nbl = NetBufferList::new(id, first);
        nbl.more = rest;
        nbl
    }

    /// Every NB, in order.
    pub fn net_buffers(&self) -> impl Iterator<Item = &NetBuffer> + '_ {
        core::iter::once(&self.net_buffer).chain(self.more.iter())
    }

    /// Every NB, in order, writable.
    pub fn net_buffers_mut(&mut self) -> impl Iterator<Item = &mut NetBuffer> + '_ {
        core::iter::once(&mut self.net_buffer).chain(self.more.iter_mut())
    }

    /// The NBs' data lengths summed (the bytes a send NBL carries).
    pub fn data_length(&self) -> usize {
        self.net_buffers().map(NetBuffer::data_length).sum()
    }

    /// Number of NBs.
    pub fn net_buffer_count(&self) -> usize {
        1 + self.more.len()
    }

    /// A receive request of one or more MDLs of the given sizes, whole chain used.
    pub fn receive_request(id: NblId, mdl_sizes: &[usize], no_push: bool) -> NetBufferList {
        let nb = NetBuffer::new(mdl_sizes.iter().map(|&n| Mdl::zeroed(n)).collect());
        let mut nbl = NetBufferList::new(id, nb);
        nbl.set_tcp_receive_no_push(no_push);
        nbl
    }

    /// The NBL's identity.
    pub fn id(&self) -> NblId {
        self.id
    }

    /// `FirstNetBuffer` (a receive NBL's only one).
    pub fn net_buffer(&self) -> &NetBuffer {
        &self.net_buffer
    }

    /// `FirstNetBuffer`, writable.
    pub fn net_buffer_mut(&mut self) -> &mut NetBuffer {
        &mut self.net_buffer
    }

    /// Replaces the net buffer (hosts re-arming an NBL for another post).
    pub fn set_net_buffer(&mut self, nb: NetBuffer) {
        self.net_buffer = nb;
    }

    /// `NET_BUFFER_LIST_INFO(nbl, id)`.
    pub fn info(&self, id: NblInfoId) -> usize {
        self.info[id as usize]
    }

    /// `NET_BUFFER_LIST_INFO(nbl, id) = value`.
    pub fn set_info(&mut self, id: NblInfoId, value: usize) {
        self.info[id as usize] = value;
    }

    /// TcpOffloadBytesTransferred (slot 0).
    pub fn tcp_offload_bytes_transferred(&self) -> usize {
        self.info(NblInfoId::TcpOffloadBytesTransferred)
    }

    /// Sets TcpOffloadBytesTransferred (slot 0).
    pub fn set_tcp_offload_bytes_transferred(&mut self, n: usize) {
        self.set_info(NblInfoId::TcpOffloadBytesTransferred, n);
    }

    /// TcpReceiveNoPush (slot 2): true = non-push mode (R-POST-7).
    pub fn tcp_receive_no_push(&self) -> bool {
        self.info(NblInfoId::TcpReceiveNoPush) != 0
    }

    /// Sets TcpReceiveNoPush.
    pub fn set_tcp_receive_no_push(&mut self, no_push: bool) {
        self.set_info(NblInfoId::TcpReceiveNoPush, usize::from(no_push));
    }

    /// TcpReceiveBytesTransferred (slot 17): bytes the host placed before posting (spec §8 A7).
    pub fn tcp_receive_bytes_transferred(&self) -> usize {
        self.info(NblInfoId::TcpReceiveBytesTransferred)
    }

    /// Sets TcpReceiveBytesTransferred.
    pub fn set_tcp_receive_bytes_transferred(&mut self, n: usize) {
        self.set_info(NblInfoId::TcpReceiveBytesTransferred, n);
    }
}

/// A chain of NBLs linked by `Next`, in order. Appending another chain and taking the head
/// are O(1) and never allocate; only [`NblChain::push_back`] of a fresh NBL allocates its node.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct NblChain {
    list: LinkedList<NetBufferList>,
}

impl NblChain {
    /// The empty chain (`NULL`).
    pub const fn new() -> NblChain {
        NblChain { list: LinkedList::new() }
    }

    /// A stand-alone NBL (`Next == NULL`).
    pub fn single(nbl: NetBufferList) -> NblChain {
        let mut c = NblChain::new();
        c.push_back(nbl);
        c
    }

    /// Links a new NBL at the tail (allocates the NBL's node once; relinking later is free).
    pub fn push_back(&mut self, nbl: NetBufferList) {
        self.list.push_back(nbl);
    }

    /// Moves every NBL of `other` to the tail of `self`, O(1).
    pub fn append(&mut self, other: &mut NblChain) {
        self.list.append(&mut other.list);
    }

    /// Unlinks the head NBL as a stand-alone chain, O(1), without allocating.
    pub fn pop_front_chain(&mut self) -> NblChain {
        if self.list.is_empty() {
            return NblChain::new();
        }
        let rest = self.list.split_off(1);
        NblChain { list: core::mem::replace(&mut self.list, rest) }
    }

    /// Unlinks the first `n` NBLs (all if fewer) as a chain; splitting a post across completions.
    pub fn split_front(&mut self, n: usize) -> NblChain {
        if n >= self.list.len() {
            return core::mem::take(self);
        }
        let rest = self.list.split_off(n);
        NblChain { list: core::mem::replace(&mut self.list, rest) }
    }

    /// Takes the whole chain, leaving `self` empty.
    pub fn take(&mut self) -> NblChain {
        core::mem::take(self)
    }

    /// Unlinks and returns the head NBL (frees its node).
    pub fn pop_front(&mut self) -> Option<NetBufferList> {
        self.list.pop_front()
    }

    /// The head NBL.
    pub fn front(&self) -> Option<&NetBufferList> {
        self.list.front()
    }

    /// The head NBL, writable.
    pub fn front_mut(&mut self) -> Option<&mut NetBufferList> {
        self.list.front_mut()
    }

    /// The tail NBL.
    pub fn back(&self) -> Option<&NetBufferList> {
        self.list.back()
    }

    /// Unlinks the tail NBL as a stand-alone chain, O(1), without allocating.
    pub fn pop_back_chain(&mut self) -> NblChain {
        match self.list.len() {
            0 => NblChain::new(),
            n => NblChain { list: self.list.split_off(n - 1) },
        }
    }

    /// The tail NBL, writable.
    pub fn back_mut(&mut self) -> Option<&mut NetBufferList> {
        self.list.back_mut()
    }

    /// Number of NBLs in the chain (O(1)).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the chain is `NULL`.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The NBLs in `Next` order.
    pub fn iter(&self) -> impl Iterator<Item = &NetBufferList> + '_ {
        self.list.iter()
    }

    /// The NBLs in `Next` order, writable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut NetBufferList> + '_ {
        self.list.iter_mut()
    }
}

impl IntoIterator for NblChain {
    type Item = NetBufferList;
    type IntoIter = std::collections::linked_list::IntoIter<NetBufferList>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.into_iter()
    }
}

impl FromIterator<NetBufferList> for NblChain {
    fn from_iter<I: IntoIterator<Item = NetBufferList>>(iter: I) -> Self {
        NblChain { list: iter.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nb(sizes: &[usize]) -> NetBuffer {
        NetBuffer::new(sizes.iter().map(|&n| Mdl::zeroed(n)).collect())
    }

    #[test]
    fn advance_moves_all_four_fields() {
        let mut b = nb(&[4, 0, 6, 5]);
        assert_eq!((b.data_offset(), b.data_length(), b.current_mdl(), b.current_mdl_offset()), (0, 15, 0, 0));
        b.advance_data_start(3).unwrap();
        assert_eq!((b.data_offset(), b.data_length(), b.current_mdl(), b.current_mdl_offset()), (3, 12, 0, 3));
        b.advance_data_start(1).unwrap();
        // Exactly at the MDL boundary: the current MDL is the next non-empty one.
        assert_eq!((b.data_offset(), b.current_mdl(), b.current_mdl_offset()), (4, 2, 0));
        b.advance_data_start(7).unwrap();
        assert_eq!((b.data_offset(), b.data_length(), b.current_mdl(), b.current_mdl_offset()), (11, 4, 3, 1));
        assert!(b.invariant_holds());
        b.advance_data_start(4).unwrap();
        assert_eq!((b.data_offset(), b.data_length(), b.current_mdl(), b.current_mdl_offset()), (15, 0, 3, 5));
        assert!(b.invariant_holds());
        assert_eq!(b.advance_data_start(1), Err(BufferError::AdvancePastEnd { delta: 1, data_length: 0 }));
    }

    #[test]
    fn retreat_is_the_inverse_without_allocation() {
        let mut b = nb(&[4, 6]);
        b.advance_data_start(7).unwrap();
        b.retreat_data_start(5).unwrap();
        assert_eq!((b.data_offset(), b.data_length(), b.current_mdl(), b.current_mdl_offset()), (2, 8, 0, 2));
        assert!(b.invariant_holds());
        assert!(b.retreat_data_start(3).is_err());
    }

    #[test]
    fn empty_chain_and_zero_length_requests() {
        let mut b = nb(&[]);
        assert_eq!(b.data_length(), 0);
        b.advance_data_start(0).unwrap();
        assert!(b.invariant_holds());
        assert_eq!(b.write_used(0, b"abc"), 0);
    }

    #[test]
    fn write_used_spans_mdls_and_respects_data_length() {
        let mut b = NetBuffer::with_used_space(vec![Mdl::zeroed(3), Mdl::zeroed(4), Mdl::zeroed(2)], 2, 6).unwrap();
        assert_eq!(b.write_used(1, b"wxyzuv"), 5);
        let mut out = Vec::new();
        b.copy_out(0, 9, &mut out);
        assert_eq!(out, b"\0\0\0wxyzu\0");
        assert!(NetBuffer::with_used_space(vec![Mdl::zeroed(3)], 2, 2).is_err());
    }

    #[test]
    fn used_slices_mut_cover_what_write_used_writes() {
        let mut b = NetBuffer::with_used_space(vec![Mdl::zeroed(3), Mdl::zeroed(4), Mdl::zeroed(2)], 2, 6).unwrap();
        let lens: Vec<usize> = b.used_slices_mut(1, 100).map(|s| s.len()).collect();
        assert_eq!(lens, vec![4, 1], "clipped to DataLength, split at the MDL boundary");
        let mut src = b"wxyzu".iter();
        for s in b.used_slices_mut(1, 5) {
            for x in s.iter_mut() {
                *x = *src.next().unwrap();
            }
        }
        let mut out = Vec::new();
        b.copy_out(0, 9, &mut out);
        assert_eq!(out, b"\0\0\0wxyzu\0");
        assert_eq!(b.used_slices_mut(6, 3).count(), 0);
    }

    #[test]
    fn chain_relinks_without_losing_order() {
        let mk = |i| NetBufferList::receive_request(NblId::new(PoolTag::Host, i), &[8], false);
        let mut a: NblChain = (0..3).map(mk).collect();
        let mut b: NblChain = (3..5).map(mk).collect();
        a.append(&mut b);
        assert!(b.is_empty());
        let head = a.pop_front_chain();
        assert_eq!(head.len(), 1);
        assert_eq!(head.front().unwrap().id(), NblId::new(PoolTag::Host, 0));
        let two = a.split_front(2);
        let ids: Vec<_> = two.iter().chain(a.iter()).map(|n| n.id().0 & 0xff).collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        assert_eq!(a.split_front(10).len(), 2);
        assert!(a.pop_front_chain().is_empty());
    }

    #[test]
    fn info_slots_alias_as_in_ndis() {
        let mut n = NetBufferList::receive_request(NblId::new(PoolTag::Host, 1), &[1], true);
        assert!(n.tcp_receive_no_push());
        n.set_tcp_receive_bytes_transferred(5);
        n.set_tcp_offload_bytes_transferred(7);
        assert_eq!(n.info(NblInfoId::TcpOffloadBytesTransferred), 7);
        assert_eq!(n.tcp_receive_bytes_transferred(), 5);
        assert_eq!(NblId::new(PoolTag::Target, 9).pool(), Some(PoolTag::Target));
        assert_eq!(NblId(0).pool(), None);
        assert_eq!(NblId::new(PoolTag::Target, 9).to_string(), "nbl:t9");
    }
}
