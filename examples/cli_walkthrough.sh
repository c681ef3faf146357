#!/usr/bin/env bash
# A walk-through of the mdnext command line, on the bundled polymer (data/paths.npz) and on
# MDAnalysisTests' adenylate kinase (PSF + DCD). Every command is printed before it runs.
#
#   bash examples/cli_walkthrough.sh            # two 15 s trainings: 63 s in all
#   QUICK=1 bash examples/cli_walkthrough.sh    # smoke test with tiny sizes: ~30 s
#   KEEP=1 bash examples/cli_walkthrough.sh     # keep the working directory (printed at the end)
#
# It works in a fresh temporary directory and needs `mdnext` and `python` (with MDAnalysisTests)
# on PATH, e.g. an activated virtual environment. Times measured on 2 idle CPU cores; on a machine
# busy with other jobs, set OMP_NUM_THREADS=1 (two torch threads were up to 5x slower there).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POLYMER="$REPO/data/paths.npz"   # tutorial format: (2048, 12, 2) Å, frames 0.00125 ps apart, no dt stored
PSF="$(python -c 'from MDAnalysisTests.datafiles import PSF; print(PSF)')"
DCD="$(python -c 'from MDAnalysisTests.datafiles import DCD; print(DCD)')"

if [[ "${QUICK:-0}" == 1 ]]; then   # tiny sizes, the linear model in steps 3-5, 60 residues in step 6
    STRIDE=16 MODEL=linear EPOCHS=1 TIME_LIMIT=0.1 N_POLYMER=10 N_ADK=5 CA="name CA and resid 1:60"
else
    STRIDE=4 MODEL=equivariant EPOCHS=200 TIME_LIMIT=0.25 N_POLYMER=100 N_ADK=20 CA="name CA"
fi                                  # (--time-limit is in minutes)
DT=$(python -c "print(0.00125 * $STRIDE)")   # ps between the frames kept by --stride

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mdnext_cli.XXXXXX")"
if [[ "${KEEP:-0}" == 1 ]]; then
    trap 'echo; echo "kept $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi
cd "$WORK"

run() {  # print a command (quoted where needed, ready to copy), run it, say how long it took
    local arg line="$"
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:=,+-]+$ ]]; then line+=" $arg"; else line+=" '$arg'"; fi
    done
    printf '\n%s\n' "$line"
    local start=$SECONDS
    "$@"
    echo "[$((SECONDS - start)) s]"
}

run mdnext --version

# 1. Look at the inputs: frames, atoms, species, dt, box.
run mdnext info "$POLYMER"
run mdnext info "$DCD" --topology "$PSF"

# 2. Convert: the C-alpha trace of the protein to XYZ (XYZ stores no time step), and every
#    STRIDE-th polymer frame to mdnext's npz.
run mdnext convert "$DCD" adk_ca.xyz --topology "$PSF" --select "$CA"
run mdnext info adk_ca.xyz
run mdnext convert "$POLYMER" polymer.npz --stride "$STRIDE"

# 3. Train the e3nn model (QUICK: the linear one) on the polymer; the last 25% of the frames are
#    the test split, scored
#    against the baselines. The file has no dt, so give it (ps).
run mdnext train polymer.npz --model "$MODEL" --dt "$DT" --test-fraction 0.25 -o polymer.pt \
    --metrics metrics.json --epochs "$EPOCHS" --time-limit "$TIME_LIMIT" --quiet

# 4. Score the saved model again: the numbers train printed (any trajectory of the same species works).
run mdnext evaluate polymer.npz --model polymer.pt --test-fraction 0.25 --horizons 1,10,100

# 5. Extrapolate with the saved model; extended XYZ keeps the time of each frame.
run mdnext extrapolate polymer.npz --model polymer.pt -n "$N_POLYMER" -o polymer_next.extxyz
run mdnext info polymer_next.extxyz

# 6. Extrapolate without --model: mdnext first fits a model on the input itself (here the
#    C-alpha atoms, 8 Å cutoff, history 2) and keeps it with --save-model. The DCD has 98
#    frames, so its 20-frame test split scores rollouts up to 10 frames only.
run mdnext extrapolate "$DCD" --topology "$PSF" --select "$CA" --history 2 --cutoff 8 \
    --batch-size 16 --epochs "$EPOCHS" --time-limit "$TIME_LIMIT" --quiet \
    -n "$N_ADK" -o adk_next.dcd --save-model adk.pt
run mdnext info adk_next.dcd --topology adk_ca.xyz   # the DCD keeps the true dt (1 ps)

echo
echo "files written:"
ls -l "$WORK"
