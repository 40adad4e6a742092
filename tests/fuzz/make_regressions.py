#!/usr/bin/env python3
"""Writes the hand-made hostile inputs of the fuzz targets into tests/fuzz/regressions/.

One file per rejection path of the parsers (and a few inputs that must parse), so that the
replay tests (tests/fuzz/replay_main.cpp, ctest fuzz_replay_*) reach every check even without a
fuzzing run. Crash inputs that libFuzzer finds go into the same directories, by hand, once the
bug is fixed. Needs only the standard library.
Usage: make_regressions.py [OUT_DIR]
"""
import json
import pathlib
import struct
import sys

HERE = pathlib.Path(__file__).resolve().parent


def safetensors(header, data=b"", length=None):
    """A safetensors file: 8-byte little-endian header length, header, data."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def f32(n):
    return {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}


SAFETENSORS = {
    "short_prefix": b"\x05\x00\x00",
    "length_over_limit": struct.pack("<Q", 100_000_001) + b"{}",
    "length_past_end": safetensors({}, length=1000),
    "length_2_pow_64_minus_1": safetensors({}, length=2**64 - 1),
    "not_json": safetensors(b"{\"a\": "),
    "header_array": safetensors([1, 2]),
    "duplicate_top_level_key": safetensors(
        b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
        b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4),
    "duplicate_key_in_entry": safetensors(
        b'{"a": {"dtype": "F32", "dtype": "F64", "shape": [1], "data_offsets": [0, 4]}}',
        b"\0" * 4),
    "entry_not_object": safetensors({"a": 3}),
    "entry_unknown_field": safetensors({"a": {**f32(1), "extra": 1}}, b"\0" * 4),
    "entry_missing_shape": safetensors({"a": {"dtype": "F32", "data_offsets": [0, 4]}}, b"\0" * 4),
    "dtype_not_string": safetensors({"a": {**f32(1), "dtype": 7}}, b"\0" * 4),
    "dtype_unknown": safetensors({"a": {**f32(1), "dtype": "F8_E4M3"}}, b"\0" * 4),
    "shape_not_array": safetensors({"a": {**f32(1), "shape": 1}}, b"\0" * 4),
    "shape_negative": safetensors({"a": {**f32(1), "shape": [-1]}}, b"\0" * 4),
    "shape_float": safetensors({"a": {**f32(1), "shape": [1.5]}}, b"\0" * 4),
    "shape_dim_over_int64": safetensors({"a": {**f32(1), "shape": [2**63]}}, b"\0" * 4),
    "shape_numel_overflow": safetensors(
        {"a": {**f32(1), "shape": [2**32, 2**32, 2**32]}}, b"\0" * 4),
    "offsets_three": safetensors({"a": {**f32(1), "data_offsets": [0, 4, 8]}}, b"\0" * 4),
    "offsets_negative": safetensors({"a": {**f32(1), "data_offsets": [-4, 0]}}, b"\0" * 4),
    "offsets_reversed": safetensors({"a": {**f32(1), "data_offsets": [4, 0]}}, b"\0" * 4),
    "offsets_past_end": safetensors({"a": {**f32(1), "data_offsets": [0, 2**64 - 1]}}, b"\0" * 4),
    "offsets_size_mismatch": safetensors({"a": {**f32(2), "data_offsets": [0, 4]}}, b"\0" * 4),
    "overlapping_tensors": safetensors({"a": f32(2), "b": f32(1)}, b"\0" * 8),
    "gap_between_tensors": safetensors(
        {"a": f32(1), "b": {**f32(1), "data_offsets": [8, 12]}}, b"\0" * 12),
    "trailing_bytes": safetensors({"a": f32(1)}, b"\0" * 9),
    "metadata_not_object": safetensors({"__metadata__": [1]}),
    "metadata_value_not_string": safetensors({"__metadata__": {"k": 1}}),
    "empty_tensor_name": safetensors({"": f32(1)}, b"\0" * 4),
    "deeply_nested_header": safetensors(b"[" * 20000 + b"]" * 20000),
    "invalid_utf8_in_name": safetensors(b'{"\xff\xfe": {"dtype": "F32", "shape": [1], '
                                        b'"data_offsets": [0, 4]}}', b"\0" * 4),
    # these must parse
    "nul_and_control_in_name": safetensors({"a\u0000\u001b[31m": f32(1)}, b"\0" * 4),
    "shape_huge_rank": safetensors({"a": {**f32(1), "shape": [1] * 5000}}, b"\0" * 4),
    "zero_size_tensor_at_end": safetensors(
        {"a": f32(1), "z": {"dtype": "I32", "shape": [0, 3], "data_offsets": [4, 4]}}, b"\0" * 4),
    "bf16_nan_payload": safetensors(
        {"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, b"\xc1\x7f\x80\xff"),
}


def config(obj):
    return json.dumps(obj).encode()


CONFIG = {
    "empty": b"",
    "not_json": b"{\"model_type\": ",
    "array": b"[]",
    "missing_model_type": config({"decoder_layers": 2}),
    "model_type_unknown": config({"model_type": "retnet"}),
    "model_type_not_string": config({"model_type": 3}),
    "duplicate_key": b'{"model_type": "decoder", "vocab_size": 10, "vocab_size": 20}',
    "unknown_field_typo": config({"model_type": "decoder", "vocab_size": 10, "decoder_embd_dim": 8}),
    "other_kinds_field": config({"model_type": "decoder", "vocab_size": 10, "encoder_layers": 2}),
    "many_unknown_fields": config({"model_type": "encoder", **{f"k{i}": i for i in range(40)}}),
    "huge_key": config({"model_type": "encoder", "x" * 5000: 1}),
    "int_as_float": config({"model_type": "decoder", "vocab_size": 10.5}),
    "int_over_int64": b'{"model_type": "decoder", "vocab_size": 18446744073709551615}',
    "float_overflow": b'{"model_type": "decoder", "vocab_size": 1e400}',
    "bool_as_int": config({"model_type": "decoder", "vocab_size": 10, "deepnorm": 1}),
    "string_as_number": config({"model_type": "decoder", "vocab_size": 10, "dropout": "0.1"}),
    "dropout_one": config({"model_type": "decoder", "vocab_size": 10, "dropout": 1.0}),
    "dropout_negative": config({"model_type": "decoder", "vocab_size": 10, "dropout": -0.1}),
    "heads_do_not_divide": config({"model_type": "decoder", "vocab_size": 10,
                                   "decoder_embed_dim": 10, "decoder_attention_heads": 3}),
    "layers_zero": config({"model_type": "decoder", "vocab_size": 10, "decoder_layers": 0}),
    "size_over_int32": config({"model_type": "decoder", "vocab_size": 2**40}),
    "rel_pos_half_set": config({"model_type": "decoder", "vocab_size": 10, "rel_pos_buckets": 32}),
    "activation_unknown": config({"model_type": "encoder", "activation_fn": "gelu_fast"}),
    "positions_unknown": config({"model_type": "encoder", "positions": "rotary"}),
    "moe_set": config({"model_type": "encoder", "moe_freq": 2, "moe_expert_count": 4}),
    "longnet_set": config({"model_type": "encoder", "segment_length": "[2048]"}),
    "eps_zero": config({"model_type": "encoder", "layernorm_eps": 0}),
    "deeply_nested_value": b'{"model_type": "encoder", "dropout": ' + b"[" * 20000 + b"]" * 20000
                           + b"}",
    "invalid_utf8": b'{"model_type": "encoder", "activation_fn": "\xff\xfe"}',
    "nul_in_key": b'{"model_type": "encoder", "drop\\u0000out": 0.1}',
    # these must parse and survive the round trip
    "deepnorm_and_subln": config(  # deepnorm wins (reference-spec 1.2)
        {"model_type": "encoder", "deepnorm": True, "subln": True}),
    "deepnorm_decoder_quirk": config({"model_type": "decoder", "vocab_size": 10, "deepnorm": True,
                                      "torchscale_deepnorm_decoder_quirk": True}),
    "longnet_defaults": config({"model_type": "encoder", "segment_length": None,
                                "dilated_ratio": "", "seq_parallel": False}),
    "tiny_dropout": b'{"model_type": "encoder", "dropout": 4.9e-324}',
}


def main():
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "regressions"
    for target, ext, files in (("safetensors", ".safetensors", SAFETENSORS),
                               ("config", ".json", CONFIG)):
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (d / (name + ext)).write_bytes(data)
        print(f"wrote {len(files)} inputs to {d}")


if __name__ == "__main__":
    main()
