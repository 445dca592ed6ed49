//! The `switchyard` binary: see [`switchyard::cli`].

/// mimalloc rather than glibc's allocator: a request allocates and frees
/// many small objects, some freed on another thread than the one that made
/// them (a request-log record is built on a worker and freed by the
/// writer), which glibc's per-arena locks and consolidation make costly
/// (BENCHMARKS.md §8b).
#[cfg(not(feature = "alloc-count"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The same, counting allocations for `bench/overhead.sh` (`PARTS=allocs`).
#[cfg(feature = "alloc-count")]
#[global_allocator]
static GLOBAL: switchyard::alloc_count::Counting<mimalloc::MiMalloc> =
    switchyard::alloc_count::Counting(mimalloc::MiMalloc);

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
