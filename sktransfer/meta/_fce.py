"""Full context embeddings of matching networks (Vinyals et al., 2016, appendix).

* ``g``: a bidirectional LSTM reads the support embeddings ``g'(x_i)`` in
  order; ``g(x_i) = g'(x_i) + h_i(forward) + h_i(backward)``.
* ``f``: an attention LSTM runs ``K`` processing steps on a query embedding
  ``f'(x)``, reading the embedded support set ``g(S)`` by content attention::

      h^_k, c_k = LSTM(f'(x), [h_{k-1}, r_{k-1}], c_{k-1})
      h_k = h^_k + f'(x)
      r_k = sum_i softmax_i(h_k . g(x_i)) g(x_i)

  and ``f(x) = h_K`` (``h_0 = r_0 = c_0 = 0``). The LSTM on the state
  ``[h, r]`` is an LSTM cell whose input is ``[f'(x), r]``: its gates are
  ``W [f'(x), h, r] + b`` either way.

Every query is embedded on its own (the queries do not see each other), so
a query's ``f(x)`` does not depend on the other queries; ``g`` depends on the
order of the support set, as the paper's does.
"""

import torch
from torch import nn

__all__ = ["FullContextEmbedding"]


def _lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step of an LSTM cell (the gate order of :class:`torch.nn.LSTMCell`)."""
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class FullContextEmbedding(nn.Module):
    """The ``g`` and ``f`` of matching networks' full context embeddings.

    Parameters
    ----------
    width : int
        Width ``d`` of the trunk's embeddings (and of both LSTMs' states).
    steps : int
        Processing steps ``K`` of the attention LSTM.
    """

    def __init__(self, width, steps):
        super().__init__()
        self.steps = int(steps)
        self.support_lstm = nn.LSTM(width, width, bidirectional=True, batch_first=True)
        self.query_cell = nn.LSTMCell(2 * width, width)

    def embed_support(self, fs):
        """``g(S)``: the support embeddings ``(n, d)`` in context, in their order."""
        out, _ = self.support_lstm(fs.unsqueeze(0))
        forward, backward = out[0].chunk(2, dim=1)
        return fs + forward + backward

    def embed_queries(self, fq, gs):
        """``f(x)`` of every query ``(m, d)`` given ``g(S)`` ``(n, d)``.

        The dtype of ``fq`` is used throughout (float64 at prediction).
        """
        cell = self.query_cell
        weights = [p.to(fq.dtype) for p in
                   (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
        gs = gs.to(fq.dtype)
        h = torch.zeros_like(fq)
        c = torch.zeros_like(fq)
        r = torch.zeros_like(fq)
        for _ in range(self.steps):
            h, c = _lstm_step(torch.cat([fq, r], dim=1), h, c, *weights)
            h = h + fq
            r = torch.softmax(h @ gs.T, dim=1) @ gs
        return h
