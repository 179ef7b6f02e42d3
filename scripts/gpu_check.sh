#!/usr/bin/env bash
# GPU check of memlib, one prepared script: (a) the three CUDA ratio benchmarks, (b) every notebook at
# the smoke preset on CUDA, with the assertions of tests/test_notebooks.py, and (c) a short run of
# notebooks/01_sslmem at the gpu preset (full split sizes, 2 epochs). 8 minutes at most in all.
#
#   scripts/gpu_check.sh [RESULTS_DIR]     results in RESULTS_DIR, else $OUT (device tool), else runs/gpu_check
#   scripts/gpu_check.sh --prepare [DIR]   on a machine with internet: put the wheels (.whl/) and the
#                                          Fashion-MNIST files (.fmnist/) that the device machine lacks
#                                          into DIR (default: the repository root)
#
# Without a CUDA GPU it prints one SKIP line per part, writes the summary and exits 0. Each part has its
# own timeout and a failing part does not stop the others; the exit status is 1 when any part that was
# due to run failed, timed out or could not run, else 0. See benchmarks/README.md (scripts/gpu_check.sh).
#
# Environment (all optional):
#   GPU_CHECK_BUDGET_S    seconds for everything (default 480): a part gets min(its own timeout, time left)
#   GPU_CHECK_COMMIT      commit to record where the checkout has no git history (the device tool copies none)
#   GPU_CHECK_WHEELS      folder of wheels installed (into a scratch folder) when papermill, ipykernel,
#                         myst_nb, opacus or mlxtend are missing (default: .whl in the repository root)
#   GPU_CHECK_NOTEBOOKS   space-separated substrings selecting the notebooks of part (b) (default: all)
#   GPU_CHECK_REHEARSE=1  run every part on the CPU at tiny sizes (part (c) at the smoke preset) to test
#                         this script on a machine without a GPU; its numbers mean nothing
#   GPU_CHECK_PYVER       --prepare: the device's Python version, for the wheels (default 3.12)
#   PYTHON                the interpreter (default python3)

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || PY=python
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

# Packages that memlib (opacus, mlxtend) and papermill + ipykernel + myst_nb's glue need and that the
# device image lacks. myst_nb is installed without its own
# dependencies: the notebooks only call `myst_nb.glue`, which needs IPython, nbformat and docutils.
DEVICE_WHEELS="asttokens backcall comm debugpy decorator docutils entrypoints executing fastjsonschema ipykernel ipython
jedi jsonschema jsonschema-specifications jupyter-client jupyter-core matplotlib-inline mlxtend myst-nb nbclient
nbformat nest-asyncio2 opacus papermill parso pexpect pickleshare platformdirs prompt-toolkit ptyprocess pure-eval
pyzmq referencing rpds-py stack-data tenacity tornado traitlets wcwidth"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --------------------------------------------------------------------------------------- --prepare
prepare() {
  local dest=${1:-$ROOT}
  mkdir -p "$dest/.whl" "$dest/.fmnist" && dest=$(cd "$dest" && pwd) || return 1
  local pyver=${GPU_CHECK_PYVER:-3.12} specs
  # Pin the versions installed here (the set the test suite runs with); unpinned where one is absent.
  specs=$("$PY" - $DEVICE_WHEELS <<'EOF'
import sys
from importlib import metadata
out = []
for name in sys.argv[1:]:
    try:
        out.append(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        out.append(name)
print(" ".join(out))
EOF
  ) || return 1
  echo "[gpu_check] pip download (Python $pyver, manylinux x86-64) into $dest/.whl: $specs"
  # shellcheck disable=SC2086
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest/.whl" $specs || return 1
  local dups
  dups=$(ls "$dest/.whl" | sed -n 's/^\([^-]*\)-.*\.whl$/\1/p' | tr 'A-Z' 'a-z' | sort | uniq -d)
  [[ -z $dups ]] || echo "[gpu_check] WARNING: several versions of: $dups in $dest/.whl; keep one of each"
  local src=${MEMLIB_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
  cp "$src"/*-ubyte* "$dest/.fmnist/" || { echo "[gpu_check] no Fashion-MNIST in $src"; return 1; }
  du -sh "$dest/.whl" "$dest/.fmnist"
  echo "[gpu_check] both folders are git-ignored; through the device tool:"
  echo "  run(command=\"GPU_CHECK_COMMIT=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null) scripts/gpu_check.sh\", carry=[\".whl\", \".fmnist\"], timeout_s=560)"
}

if [[ ${1:-} == --prepare ]]; then
  prepare "${2:-}"
  exit $?
fi
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
  exit 0
fi

# --------------------------------------------------------------------------------------- set-up
T_START=$(now)
BUDGET=${GPU_CHECK_BUDGET_S:-480}
RESULTS=${1:-${OUT:-$ROOT/runs/gpu_check}}
mkdir -p "$RESULTS" && RESULTS=$(cd "$RESULTS" && pwd) || { echo "[gpu_check] cannot create $RESULTS"; exit 2; }
cd "$ROOT" || exit 2
LOGS=$RESULTS/logs
# Only what an earlier run of this script wrote there.
rm -rf "$LOGS" "$RESULTS/notebooks_smoke" "$RESULTS/gpu_preset" "$RESULTS/gpu_check_details.tar.gz" \
  "$RESULTS/summary.txt" "$RESULTS"/bench_{sslmem,unitmem,train_step}.json
mkdir -p "$LOGS"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/memlib-gpu-check.XXXXXX")
SMI_PID=""
cleanup() {
  [[ -n $SMI_PID ]] && kill "$SMI_PID" 2>/dev/null
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
# The checkout's memlib, whatever is installed (the device machine has none installed).
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"

NAMES=() STATUS=() RCS=() WALLS=() NOTES=()
record() {  # NAME STATUS RC WALL NOTE
  NAMES+=("$1") STATUS+=("$2") RCS+=("$3") WALLS+=("$4") NOTES+=("$5")
  write_summary running
}
# summary.txt, rewritten after every part (so that a run cut short still leaves one) and at the end.
write_summary() {  # running | final
  N_FAILED=0 N_SKIPPED=0
  for i in "${!NAMES[@]}"; do
    case ${STATUS[$i]} in ok) ;; skipped) N_SKIPPED=$((N_SKIPPED + 1)) ;; *) N_FAILED=$((N_FAILED + 1)) ;; esac
  done
  TOTAL_WALL=$(since "$T_START")
  OVERALL=$([[ $N_FAILED == 0 ]] && echo ok || echo FAILED)
  [[ $1 == final ]] || OVERALL="running, so far"
  PACK=0
  if [[ -n ${OUT:-} ]] && OUT_ABS=$(cd "$OUT" 2>/dev/null && pwd) && [[ $RESULTS == "$OUT_ABS" || $RESULTS == "$OUT_ABS"/* ]]; then
    PACK=1  # the device tool brings back at most 8 files from $OUT: the details go into one archive
  fi
  {
    echo "# memlib GPU check (scripts/gpu_check.sh)"
    echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "host: $(hostname 2>/dev/null || echo '?'), $(nproc) cores"
    echo "commit: $COMMIT"
    echo "python: $PYVER"
    echo "torch: $TORCH_LINE"
    echo "mode: $MODE"
    echo "results: $RESULTS"
    echo "budget_s: $BUDGET"
    echo "total_wall_s: $TOTAL_WALL"
    echo "overall: $OVERALL ($N_FAILED failed, $N_SKIPPED skipped, of ${#NAMES[@]})"
    echo
    echo "## parts (status: ok | failed | timeout | not-run | skipped; exit: the part's exit code)"
    printf '%-22s %-8s %-5s %8s  %s\n' part status exit wall_s note
    for i in "${!NAMES[@]}"; do
      printf '%-22s %-8s %-5s %8s  %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${RCS[$i]}" "${WALLS[$i]}" "${NOTES[$i]}"
    done
    if [[ -n ${NB_TABLE:-} ]]; then
      echo
      echo "## notebooks at smoke (notebooks_smoke/)"
      printf '%s' "$NB_TABLE"
    fi
    echo
    echo "## files"
    echo "bench_*.json: the benchmarks' figures (--json); logs/: each part's output and nvidia_smi_trace.csv;"
    echo "notebooks_smoke/, gpu_preset/: executed notebooks; gpu_preset/run_summary.json: that run's timings."
    ((PACK)) && echo "Under \$OUT, logs/, notebooks_smoke/ and gpu_preset/ are packed into gpu_check_details.tar.gz."
    echo
    echo "## nvidia-smi"
    echo "$SMI"
  } >"$RESULTS/summary.txt"
}
seconds_left() { awk -v s="$T_START" -v n="$(now)" -v b="$BUDGET" 'BEGIN { printf "%d", b - (n - s) }'; }
part_timeout() {  # PLANNED: prints min(PLANNED, time left); fails under 15 s left
  local left; left=$(seconds_left)
  ((left >= 15)) || return 1
  echo $((left < $1 ? left : $1))
}
finish() {  # NAME RC WALL TIMEOUT [NOTE]: record a part that ran
  local st=ok note=${5:-}
  if [[ $2 == 124 || $2 == 137 ]]; then st=timeout note="killed after ${4} s${note:+; $note}"
  elif [[ $2 != 0 ]]; then st=failed; fi
  record "$1" "$st" "$2" "$3" "$note"
  echo "[gpu_check] END $1: $st (exit $2, ${3} s)${note:+ - $note}"
}
not_run() {  # NAME REASON
  record "$1" not-run 127 0 "$2"
  echo "FAIL $1: not run: $2"
}
run_logged() {  # NAME TIMEOUT CMD...: the command's output goes to the console and to logs/NAME.log
  local name=$1 tmo=$2; shift 2
  echo "[gpu_check] === $name (timeout ${tmo} s): $*"
  local t0; t0=$(now)
  timeout -k 10 "$tmo" "$@" 2>&1 | tee "$LOGS/$name.log"
  LAST_RC=${PIPESTATUS[0]}
  LAST_WALL=$(since "$t0")
}

# Which commit: git where there is a history, else GPU_CHECK_COMMIT.
COMMIT=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null)
if [[ -n $COMMIT ]]; then
  [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] && COMMIT="$COMMIT (uncommitted changes)"
else
  COMMIT="${GPU_CHECK_COMMIT:-unknown} (no git history here${GPU_CHECK_COMMIT:+; from GPU_CHECK_COMMIT})"
fi

PARTS=(bench_sslmem bench_unitmem bench_train_step notebooks_smoke gpu_preset_01_sslmem)
REHEARSE=${GPU_CHECK_REHEARSE:-0}
TORCH_LINE=$("$PY" - <<'EOF' 2>&1
import sys
try:
    import torch
except Exception as e:
    print(f"torch not importable ({type(e).__name__}: {e})")
    sys.exit(2)
if not torch.cuda.is_available():
    print(f"torch {torch.__version__}; no CUDA GPU (torch.cuda.is_available() is False)")
    sys.exit(1)
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): "
      f"{torch.cuda.get_device_name(0)}")
EOF
)
TORCH_RC=$?
PYVER=$("$PY" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)
TORCH_LINE=$(tail -n 1 <<<"$TORCH_LINE")
if [[ $REHEARSE == 1 ]]; then
  MODE="rehearsal on the CPU (GPU_CHECK_REHEARSE=1; tiny sizes, numbers meaningless)"; DEV=cpu
elif [[ $TORCH_RC == 0 ]]; then
  MODE="cuda"; DEV=cuda
else
  MODE="skipped"; DEV=none
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  SMI=$(timeout 30 nvidia-smi 2>&1) || SMI="nvidia-smi failed: $SMI"
else
  SMI="nvidia-smi: not found on this machine"
fi
echo "[gpu_check] results in $RESULTS"
echo "[gpu_check] commit $COMMIT; $TORCH_LINE; mode: $MODE; budget ${BUDGET} s"

# --------------------------------------------------------------------------------------- the parts
if [[ $MODE == skipped ]]; then
  if [[ $TORCH_RC == 1 ]]; then
    REASON="no CUDA GPU (torch.cuda.is_available() is False)"
  else
    REASON=$TORCH_LINE
  fi
  for p in "${PARTS[@]}"; do
    echo "SKIP $p: $REASON"
    record "$p" skipped - 0 "$REASON"
  done
  [[ $TORCH_RC == 1 ]] || { record torch failed "$TORCH_RC" 0 "$TORCH_LINE"; echo "FAIL torch: $TORCH_LINE"; }
else
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,memory.total,power.draw,clocks.sm \
      --format=csv -l 2 >"$LOGS/nvidia_smi_trace.csv" 2>&1 &
    SMI_PID=$!
  fi

  # Set-up: wheels where papermill & co. are missing, Fashion-MNIST where the Debian package is not.
  t0=$(now)
  SETUP_NOTE=""
  if [[ -z ${MEMLIB_FASHION_MNIST_DIR:-} && ! -d /usr/share/datasets/fashion-mnist && -d $ROOT/.fmnist ]]; then
    export MEMLIB_FASHION_MNIST_DIR=$ROOT/.fmnist
  fi
  # One process (imports cost seconds): prints "memlib: ok", "notebooks: ok", "data: ok" or the error.
  # Loading both splits also decompresses them once, before the notebooks run side by side.
  probe() {
    timeout 180 "$PY" - <<'EOF' 2>/dev/null
def attempt(label, fn):
    try:
        fn()
        print(f"{label}: ok")
        return True
    except BaseException as e:  # noqa: BLE001 - any failure is reported, none is raised
        print(f"{label}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return False


def nb():
    import ipykernel, myst_nb, papermill  # noqa: F401


def data():
    from memlib.data.datasets import load_dataset
    for split in ("train", "test"):
        load_dataset("fashion_mnist", split)


if attempt("memlib", lambda: __import__("memlib")):
    attempt("notebooks", nb)
    attempt("data", data)
else:
    print("notebooks: needs memlib")
    print("data: needs memlib")
EOF
  }
  PROBE=$(probe)
  if ! grep -q "^notebooks: ok" <<<"$PROBE"; then
    WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.whl}
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
      echo "[gpu_check] installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SCRATCH/site"
      timeout 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SCRATCH/site" \
        "$WHEELS"/*.whl 2>&1 | tail -n 5 | tee "$LOGS/setup_wheels.log"
      export PYTHONPATH="$SCRATCH/site:$PYTHONPATH" PATH="$SCRATCH/site/bin:$PATH"
      SETUP_NOTE="wheels installed from $WHEELS; "
      PROBE=$(probe)
    else
      SETUP_NOTE="no wheels in $WHEELS (scripts/gpu_check.sh --prepare makes them); "
    fi
  fi
  HAVE_MEMLIB=0 HAVE_NB=0 HAVE_DATA=0
  MISSING_MEMLIB=$(sed -n 's/^memlib: //p' <<<"$PROBE"); [[ $MISSING_MEMLIB == ok ]] && HAVE_MEMLIB=1
  MISSING_NB=$(sed -n 's/^notebooks: //p' <<<"$PROBE"); [[ $MISSING_NB == ok ]] && HAVE_NB=1
  MISSING_DATA=$(sed -n 's/^data: //p' <<<"$PROBE"); [[ $MISSING_DATA == ok ]] && HAVE_DATA=1
  SETUP_NOTE+="memlib ${MISSING_MEMLIB:-?}, papermill+ipykernel+myst_nb ${MISSING_NB:-?}, Fashion-MNIST ${MISSING_DATA:-?}"
  SETUP_RC=0; ((HAVE_MEMLIB && HAVE_NB && HAVE_DATA)) || SETUP_RC=1
  finish setup "$SETUP_RC" "$(since "$t0")" - "$SETUP_NOTE"

  # (a) The CUDA ratio benchmarks (benchmarks/README.md), on Fashion-MNIST-sized images (1x28x28).
  if [[ $REHEARSE == 1 ]]; then
    SSLMEM_ARGS=(--arch resnet_narrow --n 16 --repeats 1 --warmup 0 --subset 2 --threads 1)
    UNITMEM_ARGS=(--arch resnet_narrow --n 16 --views 2 --batch-size 8 --repeats 1 --threads 1)
    TRAIN_ARGS=(--arch resnet_narrow --batch-size 16 --steps 1 --repeats 1 --warmup 0 --threads 1)
  else
    SSLMEM_ARGS=(--arch resnet18 --n 5000 --views 5 --batch-size 512 --repeats 3)
    UNITMEM_ARGS=(--arch resnet18 --n 2048 --views 10 --batch-size 256 --repeats 3)
    TRAIN_ARGS=(--arch resnet18 --batch-size 512 --steps 10 --repeats 5)
  fi
  for b in sslmem unitmem train_step; do
    name=bench_$b
    case $b in sslmem) args=("${SSLMEM_ARGS[@]}") ;; unitmem) args=("${UNITMEM_ARGS[@]}") ;; *) args=("${TRAIN_ARGS[@]}") ;; esac
    if ((!HAVE_MEMLIB)); then not_run "$name" "memlib not importable: $MISSING_MEMLIB (opacus and mlxtend come with the wheels)"; continue; fi
    tmo=$(part_timeout 60) || { not_run "$name" "no time left in the ${BUDGET} s budget"; continue; }
    run_logged "$name" "$tmo" "$PY" "benchmarks/$name.py" --device "$DEV" --img-size 28 --channels 1 "${args[@]}" \
      --json "$RESULTS/$name.json"
    finish "$name" "$LAST_RC" "$LAST_WALL" "$tmo"
  done

  # The assertions of tests/test_notebooks.py::test_executes_at_smoke on an executed notebook, and that
  # its provenance table names the device. Prints one line; exits 1 on a problem.
  check_notebook() {  # PATH DEVICE SMOKE(0|1)
    "$PY" - "$@" <<'EOF'
import json, sys
path, device, smoke = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
try:
    nb = json.load(open(path))
except (OSError, ValueError) as e:
    print(f"no executed notebook ({type(e).__name__})")
    sys.exit(1)
outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
text = json.dumps(outputs)
problems = [f"error output {o.get('ename')}: {str(o.get('evalue'))[:150]}" for o in outputs
            if o.get("output_type") == "error"][:1]
if not any(k.startswith("application/papermill.record") for o in outputs for k in o.get("data", {})):
    problems.append("glues no numbers")
if smoke and "meaningless" not in text:
    problems.append("no smoke label ('meaningless')")
if "memlib commit" not in text:
    problems.append("no provenance block ('memlib commit')")
elif f"| device | {device}" not in text:
    problems.append(f"provenance does not name device {device}")
print("; ".join(problems) or "checks ok")
sys.exit(1 if problems else 0)
EOF
  }

  # (b) Every notebook at the smoke preset on the device, side by side (one process each, its own
  # cache, a share of the cores); each is checked as tests/test_notebooks.py checks it on the CPU.
  NB_TABLE=""
  mapfile -t ALL_NB < <(ls notebooks/[0-9][0-9]_*.ipynb)
  SELECT=${GPU_CHECK_NOTEBOOKS:-$([[ $REHEARSE == 1 ]] && echo 00_setup)}
  NBS=()
  for nb in "${ALL_NB[@]}"; do
    stem=$(basename "$nb" .ipynb)
    if [[ -z $SELECT ]]; then NBS+=("$nb"); continue; fi
    for s in $SELECT; do [[ $stem == *"$s"* ]] && { NBS+=("$nb"); break; }; done
  done
  if ((!HAVE_NB)); then
    not_run notebooks_smoke "papermill, ipykernel or myst_nb not importable: $MISSING_NB"
  elif ((!HAVE_DATA)); then
    not_run notebooks_smoke "Fashion-MNIST not found: $MISSING_DATA"
  elif ((${#NBS[@]} == 0)); then
    not_run notebooks_smoke "no notebook matches GPU_CHECK_NOTEBOOKS='$SELECT'"
  elif ! tmo=$(part_timeout 120); then
    not_run notebooks_smoke "no time left in the ${BUDGET} s budget"
  else
    mkdir -p "$RESULTS/notebooks_smoke"
    threads=$(($(nproc) / ${#NBS[@]})); ((threads >= 1)) || threads=1
    [[ $REHEARSE == 1 ]] && threads=1
    echo "[gpu_check] === notebooks_smoke (timeout ${tmo} s each, side by side, $threads threads each):" \
      "${NBS[*]} at preset=smoke device=$DEV"
    t0=$(now)
    for nb in "${NBS[@]}"; do
      stem=$(basename "$nb" .ipynb)
      (
        t1=$(now)
        MEMLIB_CACHE="$SCRATCH/cache_smoke_$stem" OMP_NUM_THREADS=$threads timeout -k 10 "$tmo" \
          "$PY" -m papermill "$nb" "$RESULTS/notebooks_smoke/$stem.ipynb" --cwd notebooks -k python3 \
          --no-progress-bar -p preset smoke -p device "$DEV" -p seed 0 >"$LOGS/smoke_$stem.log" 2>&1
        echo "$? $(since "$t1")" >"$SCRATCH/smoke_$stem.rc"
      ) &
    done
    wait
    nb_failed=0 nb_timeout=0 failed_names=""
    for nb in "${NBS[@]}"; do
      stem=$(basename "$nb" .ipynb)
      read -r rc wall <"$SCRATCH/smoke_$stem.rc" || { rc=1 wall=?; }
      check=$(check_notebook "$RESULTS/notebooks_smoke/$stem.ipynb" "$DEV" 1)
      crc=$?
      st=ok
      if [[ $rc == 124 || $rc == 137 ]]; then st=timeout nb_timeout=1
      elif [[ $rc != 0 || $crc != 0 ]]; then st=failed; fi
      [[ $st == ok ]] || { nb_failed=$((nb_failed + 1)); failed_names+=" $stem"; }
      line=$(printf '  %-22s %-8s exit %-4s %7s s  %s' "$stem" "$st" "$rc" "$wall" "$check")
      NB_TABLE+="$line"$'\n'
      echo "$line"
      if [[ $st != ok ]]; then
        echo "  --- last lines of logs/smoke_$stem.log:"
        tail -n 15 "$LOGS/smoke_$stem.log" | sed 's/^/  | /'
      fi
    done
    rc=0; ((nb_failed)) && rc=1; ((nb_timeout)) && rc=124
    finish notebooks_smoke "$rc" "$(since "$t0")" "$tmo" \
      "${#NBS[@]} notebooks, $nb_failed failed${failed_names:+:$failed_names}"
  fi

  # (c) A short section at the gpu preset: notebooks/01_sslmem with its full split sizes (S_S 50k,
  # S_C = S_I = S_E = 5k, ResNet-18, one encoder per family) but 2 epochs instead of 100.
  name=gpu_preset_01_sslmem
  if [[ $REHEARSE == 1 ]]; then
    GPU_PARAMS=(-p preset smoke -p epochs 1)
  else
    GPU_PARAMS=(-p preset gpu -p epochs 2)
  fi
  if ((!HAVE_NB)); then
    not_run "$name" "papermill, ipykernel or myst_nb not importable: $MISSING_NB"
  elif ((!HAVE_DATA)); then
    not_run "$name" "Fashion-MNIST not found: $MISSING_DATA"
  elif ! tmo=$(part_timeout 150); then
    not_run "$name" "no time left in the ${BUDGET} s budget"
  else
    mkdir -p "$RESULTS/gpu_preset"
    run_logged "$name" "$tmo" env MEMLIB_CACHE="$SCRATCH/cache_gpu" "$PY" -m papermill notebooks/01_sslmem.ipynb \
      "$RESULTS/gpu_preset/01_sslmem.ipynb" --cwd notebooks -k python3 --no-progress-bar --log-output \
      -p device "$DEV" -p seed 0 "${GPU_PARAMS[@]}"
    rc=$LAST_RC wall=$LAST_WALL
    check=$(check_notebook "$RESULTS/gpu_preset/01_sslmem.ipynb" "$DEV" 0)
    [[ $? == 0 || $rc != 0 ]] || rc=1
    # The run's own record (timings of training, scoring and probing), to size a full gpu run by.
    summary=$(ls "$SCRATCH"/cache_gpu/sslmem/*/summary.json 2>/dev/null | head -n 1)
    if [[ -n $summary ]]; then
      cp "$summary" "$RESULTS/gpu_preset/run_summary.json"
      timings=$("$PY" -c "import json,sys; t=json.load(open(sys.argv[1]))['timings']; print(', '.join(f'{k} {v:.1f}' for k,v in t.items()))" "$summary" 2>/dev/null)
      check+="; timings (s): ${timings:-?}"
    fi
    finish "$name" "$rc" "$wall" "$tmo" "$([[ $REHEARSE == 1 ]] && echo 'rehearsal: preset smoke, 1 epoch; ' || echo 'preset gpu, 2 epochs; ')$check"
  fi
fi

# --------------------------------------------------------------------------------------- summary
write_summary final

if ((PACK)); then
  dirs=()
  for d in logs notebooks_smoke gpu_preset; do [[ -d $RESULTS/$d ]] && dirs+=("$d"); done
  if ((${#dirs[@]})); then
    [[ -n $SMI_PID ]] && { kill "$SMI_PID" 2>/dev/null; SMI_PID=""; }
    tar -czf "$RESULTS/gpu_check_details.tar.gz" -C "$RESULTS" "${dirs[@]}" && (cd "$RESULTS" && rm -rf "${dirs[@]}")
    size=$(du -k "$RESULTS/gpu_check_details.tar.gz" | cut -f1)
    ((size <= 16384)) || echo "[gpu_check] WARNING: gpu_check_details.tar.gz is ${size} KiB, over the tool's 16 MiB per file"
  fi
fi

echo
sed -n '/^## parts/,/^## files/p' "$RESULTS/summary.txt" | sed '$d'
echo "[gpu_check] overall: $OVERALL ($N_FAILED failed, $N_SKIPPED skipped) in $TOTAL_WALL s; summary: $RESULTS/summary.txt"
[[ $N_FAILED == 0 ]]
