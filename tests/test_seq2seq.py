"""The encoder-decoder Transformer (the translation model), on tiny sizes."""

from __future__ import annotations

import torch

from dlcli.models.config import Seq2SeqConfig
from dlcli.models.seq2seq import Seq2Seq

PAD, BOS, EOS = 0, 1, 2


def tiny(**kw) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = {"src_vocab_size": 12, "tgt_vocab_size": 12, "max_len": 12, "n_layer": 2, "n_head": 2, "n_embd": 16,
           "dropout": 0.0, **kw}
    return Seq2Seq(Seq2SeqConfig(**cfg)).eval()


def test_reference_attention_equals_fused_with_padding():
    m = tiny()
    src = torch.tensor([[5, 6, 7, PAD], [8, 9, PAD, PAD]])
    tgt = torch.tensor([[BOS, 5, 6], [BOS, 8, PAD]])
    mem_fast, pad = m.encode(src)
    mem_ref, _ = m.encode(src, reference=True)
    assert torch.allclose(mem_fast[~pad], mem_ref[~pad], atol=1e-5)
    fast, _ = m.decode(tgt, mem_fast, pad)
    ref, cross = m.decode(tgt, mem_ref, pad, reference=True)
    assert torch.allclose(fast[tgt != PAD], ref[tgt != PAD], atol=1e-5)
    assert cross[0] is not None and torch.all(cross[0][1, :, :, 2:] == 0)  # no weight on source padding


def test_source_padding_does_not_change_the_output():
    m = tiny()
    tgt = torch.tensor([[BOS, 5, 6]])
    a, _ = m(torch.tensor([[5, 6, 7]]), tgt)
    b, _ = m(torch.tensor([[5, 6, 7, PAD, PAD]]), tgt)
    assert torch.allclose(a, b, atol=1e-5)


def test_decoder_is_causal():
    m = tiny()
    src = torch.tensor([[5, 6, 7]])
    a, _ = m(src, torch.tensor([[BOS, 5, 6, 7]]))
    b, _ = m(src, torch.tensor([[BOS, 5, 9, 9]]))
    assert torch.allclose(a[:, :2], b[:, :2], atol=1e-6)


def test_learns_to_reverse_and_greedy_decodes():
    torch.manual_seed(0)
    m = tiny(n_embd=32, n_head=4, share_embeddings=True).train()
    opt = torch.optim.AdamW(m.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):  # every seed 0-4 reverses 16 of 16 after 150 steps (100 steps at lr 1e-2: 5 to 13)
        seq = torch.randint(3, 12, (32, 5), generator=g)
        rev = seq.flip(1)
        tgt_in = torch.cat([torch.full((32, 1), BOS), rev], 1)
        tgt_out = torch.cat([rev, torch.full((32, 1), EOS)], 1)
        _, loss = m(seq, tgt_in, tgt_out, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    test = torch.randint(3, 12, (16, 5), generator=g)
    out = m.greedy(test, BOS, EOS)
    correct = sum(o == t.flip(0).tolist() for o, t in zip(out, test))
    assert correct >= 14, out


def test_cached_decoding_step_equals_full_decode():
    m = tiny()
    src = torch.tensor([[5, 6, 7, PAD], [8, 9, 10, 11]])
    tgt = torch.tensor([[BOS, 5, 6, 9], [BOS, 8, 4, 3]])
    memory, pad = m.encode(src)
    full, _ = m.decode(tgt, memory, pad)
    cache = m.new_cache()
    steps = [m.decode_step(tgt[:, t], memory, pad, cache) for t in range(tgt.size(1))]
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)


def _greedy_without_cache(m, src, max_len=12):
    memory, pad = m.encode(src)
    out = torch.full((src.size(0), 1), BOS)
    for _ in range(max_len - 1):
        logits, _ = m.decode(out, memory, pad)
        out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], 1)
    return [r[: r.index(EOS)] if EOS in r else r for r in out[:, 1:].tolist()]


def test_greedy_with_cache_matches_recomputation_and_beam_of_one():
    from dlcli.translation.search import beam_search

    m = tiny()
    src = torch.tensor([[5, 6, 7, PAD], [8, 9, 10, 11], [3, 4, PAD, PAD]])
    greedy = m.greedy(src, BOS, EOS)
    assert greedy == _greedy_without_cache(m, src)
    assert beam_search(m, src, BOS, EOS, beam=1, alpha=0.0) == greedy


def test_batched_beam_search_equals_one_sentence_at_a_time():
    from dlcli.translation.search import beam_search

    m = tiny()
    src = torch.tensor([[5, 6, 7, PAD], [8, 9, 10, 11], [3, 4, PAD, PAD]])
    batched = beam_search(m, src, BOS, EOS, beam=4, alpha=0.6)
    single = [beam_search(m, src[i: i + 1, : int((src[i] != PAD).sum())], BOS, EOS, beam=4, alpha=0.6)[0]
              for i in range(3)]
    assert batched == single


def test_beam_search_finds_a_likelier_translation_than_greedy():
    """Beam search ranks by log P(Y|X) (alpha = 0): it never does worse than greedy here."""
    from dlcli.translation.search import beam_search

    m = tiny(tgt_vocab_size=6, src_vocab_size=6, max_len=6)
    src = torch.tensor([[3, 4, 5], [5, 4, 3], [4, 4, 3]])

    def logp(row, ys):
        memory, pad = m.encode(src[row: row + 1])
        tgt = torch.tensor([[BOS] + ys])
        logits, _ = m.decode(tgt, memory, pad)
        lp = torch.log_softmax(logits[0], -1)
        return float(sum(lp[i, t] for i, t in enumerate(ys + [EOS])))

    greedy = m.greedy(src, BOS, EOS)
    beam = beam_search(m, src, BOS, EOS, beam=8, alpha=0.0)
    for i in range(3):
        if len(greedy[i]) < 5:  # greedy finished with eos, so it is a complete hypothesis to compare with
            assert logp(i, beam[i]) >= logp(i, greedy[i]) - 1e-5
