//! Resident memory that only moves when the receiver's own allocations do.
//!
//! A process's RSS also counts the pages of its executable and libraries it has touched. Left
//! alone, that part steps up whenever a code path runs for the first time (a Collector restart
//! runs the retry and reconnect paths, an error runs its formatting), which a soak cannot tell
//! from a leak. So once the probes are loaded, [`settle`] maps every read-only page of the
//! executable and its libraries (code, constants, unwind tables: page cache shared with every
//! process using the same files) and then drops the pages of the embedded eBPF object (2 MiB,
//! read once by the loader, never again), so the step is taken at the start and the total
//! stays about what it was.

/// Maps every read-only page of this executable and its libraries, and unmaps `done_with` (a
/// part of the executable no one reads any more). Best effort: on a kernel without `MADV_POPULATE_READ` (before 5.14) or an
/// unreadable `/proc`, nothing changes.
pub fn settle(done_with: &[u8]) {
    #[cfg(target_os = "linux")]
    {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return;
        };
        for (start, end) in read_only_file_ranges(&maps) {
            // SAFETY: the range is a mapping of this process (from /proc/self/maps); populating
            // it only fills page tables, it changes no contents.
            unsafe {
                libc::madvise(
                    start as *mut libc::c_void,
                    end - start,
                    libc::MADV_POPULATE_READ,
                );
            }
        }
        if let Some((start, len)) = whole_pages(done_with) {
            // SAFETY: the pages lie inside `done_with`, a private read-only file mapping of the
            // executable: MADV_DONTNEED only drops their page-table entries, and a later read
            // would fault the same bytes back in from the file.
            unsafe {
                libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
            }
        }
    }
}

/// `(start, end)` of the private read-only file mappings in a `/proc/<pid>/maps` text.
fn read_only_file_ranges(maps: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            // "start-end perms offset dev inode      path" (the path may hold spaces).
            let mut f = line.splitn(6, ' ');
            let range = f.next()?;
            let perms = f.next()?;
            let path = f.nth(3)?.trim_start();
            let p = perms.as_bytes();
            if p.first() != Some(&b'r') || p.get(1) != Some(&b'-') || p.get(3) != Some(&b'p') {
                return None;
            }
            if !path.starts_with('/') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let start = usize::from_str_radix(a, 16).ok()?;
            let end = usize::from_str_radix(b, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

/// The whole pages inside `bytes`: `(start, len)`, or `None` when it spans none.
fn whole_pages(bytes: &[u8]) -> Option<(usize, usize)> {
    const PAGE: usize = 4096;
    let start = (bytes.as_ptr() as usize).checked_add(PAGE - 1)? & !(PAGE - 1);
    let end = (bytes.as_ptr() as usize + bytes.len()) & !(PAGE - 1);
    (end > start).then(|| (start, end - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_read_only_file_mappings_only() {
        let maps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fe:01 123  /opt/my receiver/ebpf-receiver
55d0a0100000-55d0a0500000 r-xp 00100000 fe:01 123  /opt/my receiver/ebpf-receiver
55d0a0500000-55d0a0510000 rw-p 00500000 fe:01 123  /opt/my receiver/ebpf-receiver
55d0a0600000-55d0a0700000 rw-p 00000000 00:00 0    [heap]
7f0000000000-7f0000100000 r-xp 00000000 fe:01 456  /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000a01000 r--s 00000000 00:0e 789  anon_inode:bpf-map
7f0000b00000-7f0000b01000 r--s 00000000 fe:01 790  /dev/shm/shared
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0    [vdso]
";
        assert_eq!(
            read_only_file_ranges(maps),
            [
                (0x55d0a0000000, 0x55d0a0100000),
                (0x55d0a0100000, 0x55d0a0500000),
                (0x7f0000000000, 0x7f0000100000)
            ]
        );
        assert!(read_only_file_ranges("garbage\n\n-- r").is_empty());
    }

    #[test]
    fn only_whole_pages_inside_the_bytes() {
        let v = vec![0u8; 5 * 4096];
        let (start, len) = whole_pages(&v).expect("pages");
        assert_eq!(start % 4096, 0);
        assert!(start >= v.as_ptr() as usize);
        assert!(start + len <= v.as_ptr() as usize + v.len());
        assert!(len >= 4 * 4096);
        assert_eq!(whole_pages(&v[..100]), None);
    }

    #[test]
    fn settling_this_test_binary_keeps_its_bytes() {
        static BYTES: [u8; 3 * 4096] = [7; 3 * 4096];
        settle(&BYTES);
        assert!(BYTES.iter().all(|b| *b == 7));
    }
}
