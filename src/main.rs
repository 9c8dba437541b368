fn main() -> std::process::ExitCode {
    kes::cli::main()
}
