"""The verify tree: K candidate chains that share the anchor, with identical prefixes merged into one node.

Chains [K, D] become a trie whose node 0 is the anchor; a node at depth d holds the d-th draft of every chain
whose first d drafts equal the node's path. Merging costs nothing in exactness (a merged node has exactly the
context each chain would have given it) and narrows the verify: its width is 1 + the number of distinct
prefixes, at most 1 + K*D.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True, kw_only=True)
class DraftTree:
    """Nodes in creation order (a parent always comes before its children); node 0 is the anchor."""

    tokens: list[int]  # [W] token of each node (node 0: the anchor token)
    parents: list[int]  # [W] parent node (-1 for the anchor)
    depths: list[int]  # [W] depth of each node: position = anchor position + depth
    chain_nodes: Tensor  # [K, D+1] long, node of chain k at depth d (column 0: the anchor)

    @property
    def width(self) -> int:
        """Tokens the target verifies in one forward (anchor included)."""
        return len(self.tokens)

    @property
    def is_chain(self) -> bool:
        """True when the tree is one path: a plain causal forward verifies it, no tree mask needed."""
        return self.width == self.chain_nodes.shape[1]

    def ancestor_mask(self) -> Tensor:
        """[W, W] bool: node i may attend to node j iff j is i itself or one of its ancestors."""
        W = self.width
        mask = torch.zeros(W, W, dtype=torch.bool)
        for i, parent in enumerate(self.parents):
            if parent >= 0:
                mask[i] = mask[parent]
            mask[i, i] = True
        return mask


def build_tree(anchor_token: int, candidates: Tensor) -> DraftTree:
    """Merge K chains of D drafts [K, D] into a trie rooted at the anchor."""
    K, D = candidates.shape
    cands = candidates.tolist()
    tokens, parents, depths = [anchor_token], [-1], [0]
    index: dict[tuple[int, ...], int] = {}
    chain_nodes = torch.zeros(K, D + 1, dtype=torch.long)
    for k in range(K):
        parent = 0
        for d in range(D):
            key = tuple(cands[k][: d + 1])
            node = index.get(key)
            if node is None:
                node = len(tokens)
                index[key] = node
                tokens.append(cands[k][d])
                parents.append(parent)
                depths.append(d + 1)
            chain_nodes[k, d + 1] = node
            parent = node
    return DraftTree(tokens=tokens, parents=parents, depths=depths, chain_nodes=chain_nodes)
