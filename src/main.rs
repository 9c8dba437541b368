// musl's allocator serialises threads on one lock and returns memory eagerly; under the server's
// thread-per-connection load it cost a large share of throughput (packaging/README.md,
// "Allocator"). glibc builds keep the system allocator.
#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kes::cli::main()
}
