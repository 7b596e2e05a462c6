//! Byte counts on the command line: `1048576`, `64K`, `1M`, `1G`, `4KiB`, `100MB`.
//!
//! `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB` are powers of 1024 (as `head -c`, `dd`
//! and `iperf` read them); `KB`, `MB`, `GB`, `TB` are powers of 1000. Suffixes are
//! case-insensitive, `B` alone means bytes, and a space before the suffix is not allowed.

/// Parses a byte count with an optional suffix (see the module docs).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!("'{s}' is not a byte count (e.g. 1048576, 64K, 1M, 1G, 4KiB, 100MB)"));
    }
    if suffix.starts_with(['.', ',']) {
        return Err(format!("'{s}': whole numbers only (e.g. 1536M for 1.5G)"));
    }
    let n: u64 = digits.parse().map_err(|_| format!("'{s}' is too large"))?;
    let unit: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "'{s}': unknown size suffix '{suffix}' (use K, M, G, T, KiB, MiB, GiB, TiB = powers of 1024; KB, MB, GB, TB = powers of 1000)"
            ))
        }
    };
    n.checked_mul(unit).ok_or_else(|| format!("'{s}' is too large"))
}

/// A positive number of seconds, at most a year (a clap value parser: `--timeout 0` means
/// nothing useful, and a deadline must stay representable).
pub fn positive_secs(s: &str) -> Result<u64, String> {
    const YEAR: u64 = 365 * 24 * 3600;
    match s.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 second".into()),
        Ok(n) if n > YEAR => Err(format!("{n} s is more than a year ({YEAR} s)")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number of seconds")),
    }
}

/// [`parse_bytes`] into a narrower integer (`usize`, `u32`).
pub fn parse_bytes_as<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let n = parse_bytes(s)?;
    T::try_from(n).map_err(|_| format!("'{s}' ({n} bytes) is more than this option takes"))
}

/// A `u64` byte count (a clap value parser).
pub fn u64_bytes(s: &str) -> Result<u64, String> {
    parse_bytes(s)
}

/// A `usize` byte count (a clap value parser).
pub fn usize_bytes(s: &str) -> Result<usize, String> {
    parse_bytes_as(s)
}

/// A `u32` byte count (a clap value parser).
pub fn u32_bytes(s: &str) -> Result<u32, String> {
    parse_bytes_as(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("64K"), Ok(64 << 10));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert_eq!(parse_bytes("1M"), Ok(1 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("4KiB"), Ok(4096));
        assert_eq!(parse_bytes("3MiB"), Ok(3 << 20));
        assert_eq!(parse_bytes("100MB"), Ok(100_000_000));
        assert_eq!(parse_bytes("1KB"), Ok(1000));
        assert_eq!(parse_bytes("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_bytes("7B"), Ok(7));
        assert_eq!(parse_bytes("1T"), Ok(1 << 40));
    }

    #[test]
    fn bad_sizes_are_clear_errors() {
        for bad in ["", "G", "1X", "1.5G", "-1", "1 G", "99999999999999999999", "17179869184G"] {
            let e = parse_bytes(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{bad}: {e}");
        }
        assert!(parse_bytes_as::<u32>("4G").unwrap_err().contains("more than"));
        assert_eq!(parse_bytes_as::<u32>("4M"), Ok(4 << 20));
    }
}
