"""OneVision's generative model (notebook 04): query image + user context → semantic ID.

One encoder–decoder transformer replaces the cascade. The **encoder** reads the query photo as
tokens (the global embedding and the visual tokens of notebook 01's alignment head), the user's
recent clicks (each SKU as the sum of its SID level embeddings) and a task token; the **decoder**
emits the SID level by level. **Beam search constrained by a prefix trie** of all SKU SIDs makes
every result a real SKU. Training runs in stages (paper): pretraining (any view → its SID, no
user), SFT (logged sessions with the user's history → the clicked/ordered SKU) and DPO
(preferences from the logs, the SFT model as frozen reference).

Kit choices (the paper gives no sizes or recipes): the model size, the trie-normalised likelihood
(softmax over the *valid* children of a prefix, in training and in search alike), replaying
pretraining examples during SFT, the DPO pair grades and its NLL anchor. All are fields of
:class:`GenConfig`.

The package reads in five parts: :mod:`.trie` (SID tokens and their prefix trie), :mod:`.model`
(the transformer), :mod:`.prior` (the vision-aligned output prior, exact or from the query's top-M
SKUs), :mod:`.search` (trie-constrained beam search) and :mod:`.train` (examples, losses, training
loops, evaluation and the cached stages).
Everything a notebook uses is importable as ``gen.<name>``.
"""

from .model import (
    DPO_PAIRS,
    HISTORY_ITEMS,
    SFT_ON,
    GenConfig,
    Memory,
    OneVision,
    Queries,
    item_attributes,
    make_queries,
)
from .prior import DensePrior, TopPrior
from .search import beam_batch, beam_search, score_all
from .train import (
    STAGE_VERSION,
    STAGES,
    Examples,
    Trained,
    cold_prior_sweep,
    colourway_facts,
    dpo_loss,
    evaluate,
    load_model,
    logs_fingerprint,
    preference_lists,
    pretraining_examples,
    prior_factor_sweep,
    save_model,
    session_queries,
    sft_examples,
    train_dpo,
    train_likelihood,
    train_stages,
)
from .trie import BOS, Trie, codes_fingerprint

__all__ = [
    "BOS", "DensePrior", "GenConfig", "Memory", "OneVision", "Queries", "TopPrior", "Trie", "beam_batch",
    "beam_search",
    "codes_fingerprint", "item_attributes", "make_queries", "DPO_PAIRS", "HISTORY_ITEMS", "SFT_ON",
    "score_all", "STAGE_VERSION", "STAGES", "Examples", "Trained",
    "cold_prior_sweep", "colourway_facts", "dpo_loss", "evaluate", "load_model", "logs_fingerprint",
    "preference_lists", "prior_factor_sweep",
    "pretraining_examples", "save_model", "session_queries", "sft_examples", "train_dpo",
    "train_likelihood", "train_stages",
]
