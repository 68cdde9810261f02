"""Shared-prefix pair layout: one row per pair, `[prompt | chosen | rejected | pad]`, the prompt encoded once.

A 4D attention mask keeps the rejected response from seeing the chosen one, and its position ids restart where the
chosen response started, so each response's last-token state is what it would be after the prompt alone (the
concatenated layout's result, up to float rounding). The prompt, and its images, go through the model once instead
of twice: with long prompts and short answers a step does about half the work.
"""

from __future__ import annotations

import torch

from rmlab.data.encode import EncodedPair, collate_pairs


def collate_shared_prefix(batch: list[EncodedPair], pad_id: int) -> dict:
    """B rows for B pairs. Returns `inputs` for the backbone (4D boolean mask, position ids), `pool_rows` and
    `pool_index` (chosen ends, then rejected ends), `response_lengths`, and `rejected_spans` [(start, length,
    chosen_start)] for models whose position ids are computed from the tokens (M-RoPE)."""
    lengths = [len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in batch]
    width = max(lengths)
    n = len(batch)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, 1, width, width), dtype=torch.bool)
    positions = torch.zeros((n, width), dtype=torch.long)
    real = torch.zeros((n, width), dtype=torch.long)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    spans, chosen_end, rejected_end = [], [], []
    for b, p in enumerate(batch):
        P, C, R = len(p.prompt_ids), len(p.chosen_ids), len(p.rejected_ids)
        L = P + C + R
        ids[b, :L] = torch.tensor(p.prompt_ids + p.chosen_ids + p.rejected_ids)
        real[b, :L] = 1
        positions[b, : P + C] = torch.arange(P + C)
        positions[b, P + C : L] = torch.arange(P, P + R)
        m = causal[:L, :L].clone()
        m[P + C : L, P : P + C] = False  # rejected never sees chosen
        mask[b, 0, :L, :L] = m
        mask[b, 0, range(L, width), range(L, width)] = True  # pads see themselves only (no empty softmax row)
        spans.append((P + C, R, P))
        chosen_end.append(P + C - 1)
        rejected_end.append(L - 1)
    inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
    if any(p.prompt_token_types is not None for p in batch):
        types = torch.zeros((n, width), dtype=torch.long)
        for b, p in enumerate(batch):
            if p.prompt_token_types is not None:
                types[b, : len(p.prompt_token_types)] = torch.tensor(p.prompt_token_types)
        inputs["mm_token_type_ids"] = types
    for key in sorted({k for p in batch for k in p.vision}):
        inputs[key] = torch.cat([p.vision[key] for p in batch if key in p.vision], dim=0)
    return {
        "inputs": inputs,
        "pool_rows": torch.arange(n).repeat(2),
        "pool_index": torch.tensor(chosen_end + rejected_end),
        "response_lengths": torch.tensor([len(p.chosen_ids) for p in batch] + [len(p.rejected_ids) for p in batch]),
        "attention_mask_2d": real,
        "rejected_spans": spans,
    }


def collate_for(layout: str):
    """The collate function of a pair layout (`train.pair_layout`)."""
    layouts = {"concat": collate_pairs, "shared_prefix": collate_shared_prefix}
    if str(layout) not in layouts:
        raise ValueError(f"unknown pair layout {layout!r}; known: {', '.join(layouts)}")
    return layouts[str(layout)]
