//! The `gradmat` command. Subcommands arrive with the matfun, GP, PDE and BNN issues.

fn main() {
    eprintln!("gradmat: no subcommands are available yet in this version");
    std::process::exit(2);
}
