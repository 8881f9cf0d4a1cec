//! The seed runner binary. It exists only in a `--cfg madsim` build, where the whole
//! cluster runs inside the simulator; a plain build prints how to get one.

#[cfg(madsim)]
fn main() {
    use clap::Parser;
    let args = tidemark_simulation::runner::Args::parse();
    std::process::exit(tidemark_simulation::runner::main_with(args));
}

#[cfg(not(madsim))]
fn main() {
    eprintln!(
        "The Tidemark simulation runs only in a madsim build. Use:\n  \
         scripts/simulate.sh --seeds 0..500\n\
         which sets RUSTFLAGS=\"--cfg madsim\" and its own target directory (target/sim)."
    );
    std::process::exit(2);
}
