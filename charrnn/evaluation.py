"""Scoring text with a model: the loss per character, read as training reads it."""
from .data import iter_eval_batches


def evaluate_text(model, ids, batch_size, seq_len):
    """Mean loss (nats per character) of `model` over `ids` read as B streams of T-chunks
    with the state carried from chunk to chunk; None when there is too little text."""
    total, count, state = 0.0, 0, None
    for inputs, targets in iter_eval_batches(ids, batch_size, seq_len):
        loss, state = model.loss(inputs, targets, state)
        total, count = total + loss * inputs.size, count + inputs.size
    return total / count if count else None
