//! Human-readable sizes for messages.

/// Formats a byte count the way people read card sizes: "31.9 GB (31914983424 bytes)" would be
/// noisy in every message, so this gives binary units with one decimal.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {} ({n} bytes)", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn formats_binary_units_with_exact_count() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB (3145728 bytes)");
        assert_eq!(bytes(1536), "1.5 KiB (1536 bytes)");
    }
}
