//! Memory and time: RSS from /proc, the live heap from a counting allocator, spreads of timings.

#[allow(unused_imports)]
use super::*;

/// The system allocator, counting the bytes it has handed out and not got
/// back: what the process holds, without what the allocator keeps in reserve
/// (which RSS includes).
pub(crate) struct Counting;

pub(crate) static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Allocations handed out and not given back.
pub(crate) static BLOCKS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
pub(crate) static ALLOCATOR: Counting = Counting;

#[derive(Parser, Debug)]
#[command(about = "Scale benchmark of the provisioner's cluster state")]
pub(crate) struct Args {
    /// Nodes in the generated cluster.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) nodes: usize,
    /// Pods in the generated cluster (about 2% pending, the rest bound).
    #[arg(long, default_value_t = 50_000)]
    pub(crate) pods: usize,
    /// Timed snapshot rebuilds (after one untimed).
    #[arg(long, default_value_t = 30)]
    pub(crate) rounds: usize,
    /// Timed `Snapshot::problem` calls (after one untimed).
    #[arg(long, default_value_t = 10)]
    pub(crate) problem_rounds: usize,
    /// Skip the child process that measures the objects untrimmed.
    #[arg(long)]
    pub(crate) no_untrimmed: bool,
    /// Internal: hold the recording in DIR untrimmed, print its memory as JSON.
    #[arg(long, value_name = "DIR", hide = true)]
    pub(crate) hold_untrimmed: Option<PathBuf>,
}

pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// A field of `/proc/self/status` (`VmRSS`, `VmHWM`), in MiB.
pub(crate) fn proc_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

pub(crate) fn heap_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / MIB
}

/// The process's memory at one moment.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Memory {
    pub(crate) rss_mib: f64,
    pub(crate) hwm_mib: f64,
    pub(crate) heap_mib: f64,
    /// Live allocations, in thousands (each costs the allocator 8–16 bytes
    /// more than the heap figure counts).
    pub(crate) heap_blocks_k: f64,
}

pub(crate) fn memory() -> Memory {
    Memory {
        rss_mib: round1(proc_mib("VmRSS")),
        hwm_mib: round1(proc_mib("VmHWM")),
        heap_mib: round1(heap_mib()),
        heap_blocks_k: round1(BLOCKS.load(Ordering::Relaxed) as f64 / 1e3),
    }
}

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// min / median / p90 / max of some durations, in ms.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Spread {
    pub(crate) min: f64,
    pub(crate) median: f64,
    pub(crate) p90: f64,
    pub(crate) max: f64,
}

pub(crate) fn spread(samples: &[Duration]) -> Spread {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    if n == 0 {
        return Spread {
            min: 0.0,
            median: 0.0,
            p90: 0.0,
            max: 0.0,
        };
    }
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    // Nearest rank.
    let p90 = ms[(n * 9).div_ceil(10).max(1) - 1];
    Spread {
        min: round2(ms[0]),
        median: round2(median),
        p90: round2(p90),
        max: round2(ms[n - 1]),
    }
}

// ---------------------------------------------------------------------------
// The generated cluster.
