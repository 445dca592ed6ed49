//! The `switchyard` command, built in this package so that its tests can run
//! it: as the compile worker of the gateways they start in-process, and as a
//! gateway in a process of its own (with its own file-descriptor limit).

/// The allocator the shipped binary uses (host/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
