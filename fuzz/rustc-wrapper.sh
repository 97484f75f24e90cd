#!/bin/sh
# rustc wrapper of the fuzz build (fuzz/.cargo/config.toml): coverage instrumentation for
# gradmat's own code only.
#
# cargo-fuzz passes its flags to every crate through RUSTFLAGS: SanitizerCoverage
# (`-Cpasses=sancov-module`, `-Cllvm-args=-sanitizer-coverage-*`), debug assertions and one
# codegen unit. Instrumenting faer (and the rest of the dependency tree) with one codegen unit is
# what made the nightly fuzz build take most of an hour on 2 cores, and buys nothing: the
# properties are about gradmat's code, whose branches are what libFuzzer needs to see. So for a
# crate whose source lies outside this repository (crates.io dependencies) this wrapper drops
# those flags — the dependency is then built as in any release build (the fuzz profile's
# opt-level, codegen units and no debug assertions) — and leaves every other flag (`--cfg
# fuzzing`, sanitizers if one is requested) alone. gradmat's crates and the fuzz targets are
# compiled as cargo-fuzz asks, except that every crate keeps the profile's codegen units
# (cargo-fuzz forces one).
#
# cargo calls it as `rustc-wrapper.sh <rustc> <args…>`.
rustc=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
root_phys=$(cd "$root" && pwd -P)
src=
for a do
    case $a in
        *.rs) src=$a; break ;;
    esac
done
case $src in
    "") exec "$rustc" "$@" ;; # probes (`rustc -vV`, `--print …`): unchanged
    "$root"/* | "$root_phys"/* | [!/]*) ours=1 ;; # this repository (absolute or relative path)
    *) ours=0 ;; # a dependency (crates.io)
esac
for a do
    shift
    case $a in
        # One codegen unit for everything serialises the longest compiles (gradmat-apps and
        # gradmat-matfun come last, alone) on one core: every crate keeps the profile's.
        -Ccodegen-units=1) ;;
        -Cpasses=sancov-module | -Cllvm-args=-sanitizer-coverage-* | \
        -Cllvm-args=-simplifycfg-branch-fold-threshold=0 | -Cdebug-assertions)
            [ "$ours" = 1 ] && set -- "$@" "$a" ;;
        *) set -- "$@" "$a" ;;
    esac
done
exec "$rustc" "$@"
