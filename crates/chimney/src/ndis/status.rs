//! `NDIS_STATUS` values the chimney uses (spec §0), as a Rust enum.

/// An `NDIS_STATUS` code. Discriminants are the WDK header values, so [`NdisStatus::code`]
/// is what a Windows driver would see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum NdisStatus {
    /// `NDIS_STATUS_SUCCESS`.
    Success = 0x0000_0000,
    /// `NDIS_STATUS_PENDING`: the only legal return of MiniportTcpOffloadReceive (R-POST-2).
    Pending = 0x0000_0103,
    /// `NDIS_STATUS_NOT_ACCEPTED`: the name the indication remarks use for "refused" (spec §8 A2).
    NotAccepted = 0x0001_0003,
    /// `NDIS_STATUS_FAILURE`.
    Failure = 0xC000_0001,
    /// `NDIS_STATUS_RESOURCES`.
    Resources = 0xC000_009A,
    /// `NDIS_STATUS_INVALID_STATE`: receive posted after TcpIndicateDisconnect (R-FIN-3).
    InvalidState = 0xC000_0184,
    /// `NDIS_STATUS_REQUEST_ABORTED`: receive completions after RST or abortive disconnect.
    RequestAborted = 0xC001_000C,
    /// `NDIS_STATUS_UPLOAD_IN_PROGRESS`: I/O completed while the connection is uploaded.
    UploadInProgress = 0xC023_1001,
    /// `NDIS_STATUS_OFFLOAD_TCP_RCV_BUFFER`: initiate failure, no room for BufferedData.
    OffloadTcpRcvBuffer = 0xC023_100B,
    /// `NDIS_STATUS_OFFLOAD_TCP_RCV_WINDOW`: initiate failure, InitialRcvWnd too big.
    OffloadTcpRcvWindow = 0xC023_100C,
    /// `NDIS_STATUS_OFFLOAD_DATA_NOT_ACCEPTED`: indication refused, nothing consumed.
    OffloadDataNotAccepted = 0xC023_100E,
    /// `NDIS_STATUS_OFFLOAD_DATA_PARTIALLY_ACCEPTED`: indication partly consumed.
    OffloadDataPartiallyAccepted = 0xC023_1010,
}

impl NdisStatus {
    /// Every value this enum knows, for lookups and listings.
    pub const ALL: [NdisStatus; 12] = [
        NdisStatus::Success,
        NdisStatus::Pending,
        NdisStatus::NotAccepted,
        NdisStatus::Failure,
        NdisStatus::Resources,
        NdisStatus::InvalidState,
        NdisStatus::RequestAborted,
        NdisStatus::UploadInProgress,
        NdisStatus::OffloadTcpRcvBuffer,
        NdisStatus::OffloadTcpRcvWindow,
        NdisStatus::OffloadDataNotAccepted,
        NdisStatus::OffloadDataPartiallyAccepted,
    ];

    /// The 32-bit code of the WDK headers.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The status with this code, if the chimney uses it.
    pub fn from_code(code: u32) -> Option<NdisStatus> {
        Self::ALL.iter().copied().find(|s| s.code() == code)
    }

    /// The WDK name, e.g. `NDIS_STATUS_REQUEST_ABORTED`.
    pub const fn name(self) -> &'static str {
        match self {
            NdisStatus::Success => "NDIS_STATUS_SUCCESS",
            NdisStatus::Pending => "NDIS_STATUS_PENDING",
            NdisStatus::NotAccepted => "NDIS_STATUS_NOT_ACCEPTED",
            NdisStatus::Failure => "NDIS_STATUS_FAILURE",
            NdisStatus::Resources => "NDIS_STATUS_RESOURCES",
            NdisStatus::InvalidState => "NDIS_STATUS_INVALID_STATE",
            NdisStatus::RequestAborted => "NDIS_STATUS_REQUEST_ABORTED",
            NdisStatus::UploadInProgress => "NDIS_STATUS_UPLOAD_IN_PROGRESS",
            NdisStatus::OffloadTcpRcvBuffer => "NDIS_STATUS_OFFLOAD_TCP_RCV_BUFFER",
            NdisStatus::OffloadTcpRcvWindow => "NDIS_STATUS_OFFLOAD_TCP_RCV_WINDOW",
            NdisStatus::OffloadDataNotAccepted => "NDIS_STATUS_OFFLOAD_DATA_NOT_ACCEPTED",
            NdisStatus::OffloadDataPartiallyAccepted => "NDIS_STATUS_OFFLOAD_DATA_PARTIALLY_ACCEPTED",
        }
    }
}

impl core::fmt::Display for NdisStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_the_headers() {
        for s in NdisStatus::ALL {
            assert_eq!(NdisStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(NdisStatus::RequestAborted.code(), 0xC001_000C);
        assert_eq!(NdisStatus::Pending.code(), 0x103);
        assert_eq!(NdisStatus::from_code(0x1234), None);
        assert_eq!(NdisStatus::InvalidState.to_string(), "NDIS_STATUS_INVALID_STATE");
    }
}
