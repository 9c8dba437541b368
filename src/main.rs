// musl's allocator serialises threads on one lock and returns memory eagerly; under the server's
// thread-per-connection load it cost a large share of throughput (packaging/README.md,
// "Allocator"). glibc builds keep the system allocator.
// Either way the allocator is wrapped to count live heap objects (`kes_system_mem_heap_objects`).
#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: kes::alloc::Counting<mimalloc::MiMalloc> = kes::alloc::Counting(mimalloc::MiMalloc);
#[cfg(not(target_env = "musl"))]
#[global_allocator]
static GLOBAL: kes::alloc::Counting<std::alloc::System> = kes::alloc::Counting(std::alloc::System);

fn main() -> std::process::ExitCode {
    kes::alloc::mark_installed();
    kes::cli::main()
}
