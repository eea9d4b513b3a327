"""DataProto: construction, selection, splitting and joining, repeats, storage and pickling."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from tensordict import TensorDict

from verl import DataProto
from verl.protocol import DataProtoError, DataProtoItem, pad_dataproto_to_divisor, unpad_dataproto


def make(n=5):
    return DataProto.from_dict(
        tensors={"input_ids": torch.arange(n * 3).view(n, 3), "scores": torch.randn(n, 2).bfloat16()},
        non_tensors={"uid": [f"u{i}" for i in range(n)], "chat": [[{"role": "user", "content": str(i)}] for i in range(n)]},
        meta_info={"temperature": 0.7},
    )


def test_from_single_dict_sorts_tensors_and_keeps_lists_as_objects():
    d = DataProto.from_single_dict({"x": torch.zeros(2, 4), "msgs": [[1, 2], [3, 4]]})
    assert list(d.batch.keys()) == ["x"]
    assert d.non_tensor_batch["msgs"].dtype == object and d.non_tensor_batch["msgs"].shape == (2,)
    assert d.non_tensor_batch["msgs"][1] == [3, 4]
    assert len(d) == 2


def test_mismatched_lengths_are_rejected_with_the_key():
    with pytest.raises(ValueError, match=r"\['b'\] has 3 rows"):
        DataProto.from_dict({"a": torch.zeros(2, 1), "b": torch.zeros(3, 1)})
    with pytest.raises(ValueError, match=r"\['uid'\] has 3 rows"):
        DataProto.from_dict({"a": torch.zeros(2, 1)}, {"uid": ["a", "b", "c"]})
    d = make(2)
    with pytest.raises(RuntimeError, match="batch dimension mismatch"):  # TensorDict's own check
        d.batch["new"] = torch.zeros(4)


def test_unknown_keys_name_what_exists():
    d = make()
    with pytest.raises(KeyError, match="no key\\(s\\) \\['nope'\\]"):
        d.select(batch_keys=["nope"])
    with pytest.raises(KeyError, match="nope"):
        d.batch["nope"]
    with pytest.raises(KeyError):
        d.pop(non_tensor_batch_keys=["missing"])


def test_select_pop_rename():
    d = make()
    s = d.select(batch_keys=["input_ids"], non_tensor_batch_keys=["uid"], meta_info_keys=[])
    assert list(s.batch.keys()) == ["input_ids"] and list(s.non_tensor_batch) == ["uid"] and s.meta_info == {}
    assert s.batch["input_ids"] is d.batch["input_ids"]
    deep = d.select(batch_keys=["input_ids"], deepcopy=True)
    assert deep.batch["input_ids"] is not d.batch["input_ids"]
    popped = d.pop(batch_keys=["scores"], non_tensor_batch_keys=["chat"])
    assert "scores" not in d.batch and "chat" not in d.non_tensor_batch
    assert popped.batch["scores"].shape == (5, 2) and len(popped) == 5
    d.rename("input_ids", "ids")
    assert list(d.batch.keys()) == ["ids"]
    with pytest.raises(ValueError):
        d.rename(["ids"], ["a", "b"])


def test_union_merges_and_rejects_conflicts():
    a = make()
    b = DataProto.from_dict({"input_ids": a.batch["input_ids"].clone(), "values": torch.ones(5, 3)}, meta_info={"k": 1})
    a.union(b)
    assert set(a.batch.keys()) == {"input_ids", "scores", "values"} and a.meta_info["k"] == 1
    c = DataProto.from_dict({"values": torch.zeros(5, 3)})
    with pytest.raises(ValueError, match="union conflict: tensor 'values'"):
        a.union(c)
    d = DataProto.from_dict(non_tensors={"uid": ["x"] * 5})
    with pytest.raises(ValueError, match="'uid'"):
        a.union(d)
    with pytest.raises(ValueError, match="meta_info\\['temperature'\\]"):
        a.union(DataProto(meta_info={"temperature": 1.0}))


def test_chunk_needs_an_even_split_unless_padded_or_auto_padding():
    d = make(5)
    with pytest.raises(DataProtoError, match="5 rows do not split into 2"):
        d.chunk(2)
    with pytest.raises(AssertionError):  # what verl raises; DataProtoError is also a ValueError
        d.chunk(2)
    padded, pad = pad_dataproto_to_divisor(d, 2)
    parts = padded.chunk(2)
    assert [len(p) for p in parts] == [3, 3] and all(p.meta_info == d.meta_info for p in parts)
    back = unpad_dataproto(DataProto.concat(parts), pad)
    assert torch.equal(back.batch["input_ids"], d.batch["input_ids"])
    assert list(back.non_tensor_batch["uid"]) == list(d.non_tensor_batch["uid"])
    auto = DataProto.from_dict({"x": torch.arange(5)}, auto_padding=True)
    assert [p.batch["x"].tolist() for p in auto.chunk(2)] == [[0, 1, 2], [3, 4]]


def test_batch_is_a_tensordict():
    td = TensorDict({"obs": torch.arange(6).view(3, 2)}, batch_size=[3])
    d = DataProto(batch=td, non_tensor_batch={"uid": ["a", "b", "c"]})
    assert d.batch is td and len(d) == 3
    assert isinstance(d[1:].batch, TensorDict) and d[1:].batch.batch_size == torch.Size([2])
    assert isinstance(d[0].batch, TensorDict) and d[0].batch["obs"].tolist() == [0, 1]
    with pytest.raises(AssertionError, match="one batch dimension"):
        DataProto.from_dict({"a": torch.zeros(4, 2), "b": torch.zeros(4, 2, 3)}, num_batch_dims=2)
    assert len(DataProto(batch=None, non_tensor_batch={"uid": ["a", "b"]})) == 2 and len(DataProto()) == 0


def test_concat_gathers_worker_metrics_and_checks_other_meta():
    parts = [DataProto.from_dict({"x": torch.zeros(2)}, meta_info={"metrics": {"loss": v}, "temperature": 1.0})
             for v in (0.5, 0.7)]
    parts.append(DataProto.from_dict({"x": torch.zeros(1)}, meta_info={"metrics": [{"loss": 0.9}]}))
    out = DataProto.concat(parts)
    assert out.meta_info == {"metrics": {"loss": [0.5, 0.7, 0.9]}, "temperature": 1.0} and len(out) == 5
    clash = DataProto.from_dict({"x": torch.zeros(1)}, meta_info={"temperature": 0.5})
    with pytest.raises(ValueError, match="Conflicting values for meta_info key 'temperature'"):
        DataProto.concat([parts[0], clash])


def test_make_iterator_and_sample_level_repeat():
    d = DataProto.from_dict({"x": torch.arange(8)}, meta_info={"k": 1})
    minis = list(d.make_iterator(mini_batch_size=4, epochs=2, seed=3, dataloader_kwargs={"shuffle": True}))
    assert len(minis) == 4 and all(m.meta_info == {"k": 1} and len(m) == 4 for m in minis)
    assert sorted(torch.cat([m.batch["x"] for m in minis[:2]]).tolist()) == list(range(8))
    again = list(d.make_iterator(mini_batch_size=4, epochs=2, seed=3, dataloader_kwargs={"shuffle": True}))
    assert all(torch.equal(a.batch["x"], b.batch["x"]) for a, b in zip(minis, again))
    assert [m.batch["x"].tolist() for m in d.make_iterator(4, 1)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="mini-batches of 3"):
        d.make_iterator(3, 1)
    rep = make(3).sample_level_repeat([2, 0, 1])
    assert list(rep.non_tensor_batch["uid"]) == ["u0", "u0", "u2"] and rep.batch["input_ids"][:, 0].tolist() == [0, 0, 6]


def test_to_and_from_tensordict():
    d = make(3)
    td = d.to_tensordict()
    assert torch.equal(td["input_ids"], d.batch["input_ids"]) and td["uid"] == ["u0", "u1", "u2"]
    back = DataProto.from_tensordict(td)
    assert list(back.non_tensor_batch["uid"]) == ["u0", "u1", "u2"] and back.meta_info == {"temperature": 0.7}
    assert back.non_tensor_batch["chat"][1] == [{"role": "user", "content": "1"}]


def test_split_and_concat_round_trip():
    d = make(7)
    parts = d.split(3)
    assert [len(p) for p in parts] == [3, 3, 1]
    assert torch.equal(DataProto.concat(parts).batch["input_ids"], d.batch["input_ids"])


def test_concat_rejects_different_keys():
    with pytest.raises(ValueError, match="part 1"):
        DataProto.concat([make(2), make(2).select(batch_keys=["input_ids"])])


def test_repeat_interleave_and_tile():
    d = make(3)
    inter = d.repeat(2, interleave=True)
    assert inter.batch["input_ids"][:, 0].tolist() == [0, 0, 3, 3, 6, 6]
    assert list(inter.non_tensor_batch["uid"]) == ["u0", "u0", "u1", "u1", "u2", "u2"]
    tiled = d.repeat(2, interleave=False)
    assert tiled.batch["input_ids"][:, 0].tolist() == [0, 3, 6, 0, 3, 6]
    assert tiled.meta_info == d.meta_info


def test_reorder_and_indexing():
    d = make(4)
    d.reorder(torch.tensor([3, 1, 0, 2]))
    assert d.batch["input_ids"][:, 0].tolist() == [9, 3, 0, 6]
    assert list(d.non_tensor_batch["uid"]) == ["u3", "u1", "u0", "u2"]
    item = d[1]
    assert isinstance(item, DataProtoItem) and item.non_tensor_batch["uid"] == "u1"
    assert item.batch["input_ids"].tolist() == [3, 4, 5]
    assert len(d[1:3]) == 2 and len(d[np.array([0, 0, 1])]) == 3
    assert d[torch.tensor([True, False, True, False])].non_tensor_batch["uid"].tolist() == ["u3", "u0"]
    assert [it.non_tensor_batch["uid"] for it in d] == ["u3", "u1", "u0", "u2"]
    with pytest.raises(IndexError):
        d[4]
    with pytest.raises(IndexError):
        d[np.array([0, 9])]
    with pytest.raises(ValueError):
        d.reorder([0, 1])


def test_to_device_and_save_load(tmp_path):
    d = make().to("cpu")
    path = tmp_path / "batch.pt"
    d.save_to_disk(path)
    back = DataProto.load_from_disk(path)
    assert back.batch["scores"].dtype == torch.bfloat16
    assert torch.equal(back.batch["scores"], d.batch["scores"])
    assert back.non_tensor_batch["chat"][2] == [{"role": "user", "content": "2"}]
    assert back.meta_info == {"temperature": 0.7}


def test_pickle_sends_tensors_as_out_of_band_buffers():
    d = make(64)
    buffers = []
    payload = pickle.dumps(d, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 2, "each tensor travels as one raw buffer"
    assert sum(memoryview(b).nbytes for b in buffers) == 64 * 3 * 8 + 64 * 2 * 2
    back = pickle.loads(payload, buffers=buffers)
    assert torch.equal(back.batch["input_ids"], d.batch["input_ids"])
    assert back.batch["scores"].dtype == torch.bfloat16


def test_import_verl_is_light():
    code = "import sys, verl; heavy = [m for m in ('ray', 'transformers', 'tensordict') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
