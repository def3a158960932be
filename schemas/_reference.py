"""Records of reference collections: how they were built, their versions and their cells."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from schemas._base import SCHEMA_VERSION, Record
from schemas._genes import Species
from schemas._species import OrthologReport, SpeciesCall, SpeciesOption

Weighting = Literal["expression", "mean"]
"""How the top genes of a cell are averaged: by expression, or plainly (the paper's equation)."""

DEFAULT_ENCODER = "minilm"
"""Gene text encoder used when none is named (``CELLVEC_ENCODER`` overrides it where a default is read)."""

RefineMethod = Literal["none", "supcon"]
"""Refinement of pooled vectors before they are stored."""


class PoolingParams(Record):
    """How a cell's text vector is pooled from gene vectors.

    Parameters
    ----------
    top_n
        Number of top expressed described genes per cell; ``None`` uses every expressed gene (GenePT-w).
    weighting
        ``"expression"`` weights each gene by its (log-normalised) expression; ``"mean"`` is a plain mean.
    idf
        Down-weight genes that sit in almost every reference cell's top list (inverse document frequency).
    whiten
        Remove the gene vectors' shared mean direction before pooling (fitted on the gene collection).
    exclude_mito
        Leave out mitochondrial genes (``MT-``/``mt-``).
    exclude_ribo
        Leave out ribosomal protein genes (``RPL``/``RPS``).
    """

    top_n: int | None = Field(default=20, ge=1)
    weighting: Weighting = "expression"
    idf: bool = False
    whiten: bool = False
    exclude_mito: bool = False
    exclude_ribo: bool = False


class ExpressionParams(Record):
    """The expression view: projections of log-normalised expression fitted on the reference at build time.

    Parameters
    ----------
    n_genes
        Number of highly variable reference genes in the PCA panel.
    n_components
        Number of principal components.
    head
        ``"pca"``: the unit PCA scores only (the Seurat-like view); ``"pca+logistic"``: the unit PCA scores
        concatenated with the unit (per-cell centred) class scores of a multinomial logistic regression
        fitted on the reference's log-expression over all its genes, so that cosine neighbours agree on what
        separates the reference's labels.
    c
        Inverse L2 regularisation strength of the logistic regression.
    """

    n_genes: int = Field(default=2000, ge=10)
    n_components: int = Field(default=50, ge=2)
    head: Literal["pca", "pca+logistic"] = "pca+logistic"
    c: float = Field(default=1.0, gt=0)


class RefineParams(Record):
    """Supervised contrastive refinement (SupCon) hyper-parameters.

    Parameters
    ----------
    method
        ``"none"`` stores pooled vectors; ``"supcon"`` trains an encoder on reference cells.
    temperature
        SupCon temperature.
    hidden_dim
        Width of the encoder's hidden layer.
    out_dim
        Dimension of the stored (encoder output) vector.
    proj_dim
        Dimension of the projection head used only by the loss.
    epochs
        Maximum number of epochs.
    patience
        Epochs without validation improvement before stopping.
    batch_size
        Mini-batch size (cells; each contributes two views).
    lr
        AdamW learning rate.
    weight_decay
        AdamW weight decay.
    val_fraction
        Share of reference cells held out for early stopping.
    seed
        Random seed.
    """

    method: RefineMethod = "none"
    temperature: float = Field(default=0.1, gt=0)
    hidden_dim: int = Field(default=512, ge=4)
    out_dim: int = Field(default=128, ge=2)
    proj_dim: int = Field(default=64, ge=2)
    epochs: int = Field(default=100, ge=1)
    patience: int = Field(default=10, ge=1)
    batch_size: int = Field(default=256, ge=4)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    val_fraction: float = Field(default=0.1, ge=0, lt=0.5)
    seed: int = 0


CellMode = Literal["paper", "genept", "expression", "hybrid"]
"""Named ways of turning a cell into a vector (see :class:`CellVectorSpec`)."""

DEFAULT_TEXT_DIMS = 8
"""Directions the hybrid mode's text view is projected on by default: the smallest stored vector whose macro-F1
is within 0.005 of the full 384-d text view on every accuracy task (``benchmarks/accuracy/modes.py``; see
docs/accuracy.md). The paper's mode keeps the full text vector."""

DEFAULT_MODE: CellMode = "hybrid"
"""Mode of ``cellvec reference build`` when none is given; chosen by the benchmark (see the README)."""


class CellVectorSpec(Record):
    """Everything that decides a cell's stored vector; a query must be built the same way.

    Parameters
    ----------
    mode
        ``"paper"``: text vectors pooled over the top 20 genes; ``"genept"``: over all expressed genes;
        ``"expression"``: the expression view only; ``"hybrid"``: text and expression views concatenated.
    encoder
        Gene text encoder id (e.g. ``"minilm"``).
    species
        Species of the reference genes; ``"auto"`` (the default) infers it from the gene names when the
        reference is built, and the build record stores the species found.
    pooling
        Text pooling parameters (unused in ``"expression"`` mode).
    expression
        Expression view parameters (``None`` unless mode uses it).
    text_weight
        Weight of the unit text vector in ``"hybrid"`` mode (the expression part gets ``1 - text_weight``).
    refine
        Refinement parameters.
    text_dims
        Project the pooled text view on its top ``text_dims`` singular directions, fitted on the reference
        cells (``None``: keep the encoder's full dimension, as the paper does). Default: ``DEFAULT_TEXT_DIMS``
        in the ``"hybrid"`` mode, ``None`` in the others.
    keep_views
        Store SupCon's second view (housekeeping genes removed) beside every reference cell, so that
        ``refit`` needs no h5ad. Turning it off halves the stored vectors of an unrefined reference (atlas
        scale); ``refit`` then uses the first view twice.
    """

    mode: CellMode = DEFAULT_MODE
    encoder: str = DEFAULT_ENCODER
    species: SpeciesOption = "auto"
    pooling: PoolingParams = PoolingParams()
    expression: ExpressionParams | None = None
    text_weight: float = Field(default=0.2, ge=0, le=1)
    refine: RefineParams = RefineParams()
    text_dims: int | None = Field(default=None, ge=1)
    keep_views: bool = True

    @model_validator(mode="before")
    @classmethod
    def _expression_default(cls, data: Any) -> Any:
        """Give modes that use the expression view its default parameters when none are given.

        The hybrid mode's text view is projected on ``DEFAULT_TEXT_DIMS`` directions unless ``text_dims`` is
        given (``None`` keeps the full vector).
        """
        if not isinstance(data, dict):
            return data
        mode = data.get("mode", DEFAULT_MODE)
        if mode in ("expression", "hybrid") and data.get("expression") is None:
            data = {**data, "expression": ExpressionParams()}
        if mode == "hybrid" and "text_dims" not in data:
            data = {**data, "text_dims": DEFAULT_TEXT_DIMS}
        return data

    def known_species(self) -> Species:
        """Return the species once resolved; ``"auto"`` is resolved by ``build_reference`` before any use."""
        if self.species == "auto":
            msg = "the spec's species is still 'auto'; resolve it from the gene names first (resolve_species)"
            raise ValueError(msg)
        return self.species

    def uses_text(self) -> bool:
        """Return whether gene text vectors enter the cell vector."""
        return self.mode != "expression"

    def stores_view2(self) -> bool:
        """Return whether reference cells keep SupCon's second view as a named vector."""
        return self.uses_text() and (self.keep_views or self.refine.method != "none")

    def uses_expression(self) -> bool:
        """Return whether the expression view enters the cell vector."""
        return self.mode in ("expression", "hybrid")


class BuildRecord(Record):
    """How one version of a reference was built; stored with it and checked against every query.

    Parameters
    ----------
    schema_version
        Layout version of stored records.
    reference
        Reference name.
    version
        Version number (1, 2, …).
    spec
        How cell vectors are made.
    dim
        Dimension of the searched vector.
    text_dim
        Dimension of the gene text vectors (0 when unused).
    label_key
        ``obs`` column the labels came from.
    artifacts
        SHA-256 of each fitted artefact stored with the version (``"supcon"``, ``"expression"``, ``"idf"``…).
    n_cells
        Number of cells in the version.
    labels
        Cells per label.
    created
        When the version was built (UTC).
    status
        ``"building"`` until every point is written and indexed, then ``"ready"``.
    species_call
        How the reference's species was decided (``None`` in versions built before species inference).
    """

    schema_version: int = SCHEMA_VERSION
    reference: str
    version: int = Field(ge=1)
    spec: CellVectorSpec
    dim: int = Field(ge=1)
    text_dim: int = Field(default=0, ge=0)
    label_key: str
    artifacts: dict[str, str] = Field(default_factory=dict)
    n_cells: int = Field(default=0, ge=0)
    labels: dict[str, int] = Field(default_factory=dict)
    created: datetime
    status: Literal["building", "ready"] = "building"
    species_call: SpeciesCall | None = None

    @model_validator(mode="before")
    @classmethod
    def _full_text_in_old_records(cls, data: Any) -> Any:
        """Read a record written before ``text_dims`` existed as what it was: the full text vector."""
        if isinstance(data, dict) and isinstance(data.get("spec"), dict) and "text_dims" not in data["spec"]:
            return {**data, "spec": {**data["spec"], "text_dims": None}}
        return data

    @model_validator(mode="after")
    def _species_known(self) -> BuildRecord:
        """Refuse ``species="auto"`` in a stored spec: it names the species the reference was built with."""
        if self.spec.species == "auto":
            msg = "a build record needs the reference's species; resolve species='auto' before writing it"
            raise ValueError(msg)
        return self

    @property
    def species(self) -> Species:
        """The species of the reference's genes."""
        return self.spec.known_species()


class ReferenceManifest(Record):
    """The list of versions of one reference and which one is current.

    Parameters
    ----------
    name
        Reference name.
    current
        Version that queries use by default (``None`` until the first build finishes).
    versions
        Build record of every version kept, oldest first.
    """

    name: str
    current: int | None = None
    versions: list[BuildRecord] = Field(default_factory=list)

    def record(self, version: int | None = None) -> BuildRecord | None:
        """Return the build record of ``version`` (the current one by default), or ``None``."""
        wanted = self.current if version is None else version
        for rec in self.versions:
            if rec.version == wanted:
                return rec
        return None


class ReferenceCellPayload(Record):
    """Payload stored with each reference cell.

    Parameters
    ----------
    reference
        Reference name.
    cell_id
        The cell's ``obs_names`` entry.
    label
        Cell type label.
    dataset
        Dataset (batch) the cell came from.
    top_genes
        The cell's top described genes, by expression: ids into the version's ``top_genes.txt`` artefact
        (line ``i`` is gene ``i``; integers cost Qdrant a quarter of strings to store), or the symbols
        themselves in references built before it.
    """

    reference: str
    cell_id: str
    label: str
    dataset: str = ""
    top_genes: list[int] | list[str] = Field(default_factory=list)


class Neighbour(Record):
    """One reference cell returned by a search.

    Parameters
    ----------
    cell_id
        Reference cell id.
    label
        Its label.
    dataset
        Its dataset.
    score
        Cosine similarity to the query.
    """

    cell_id: str
    label: str
    dataset: str = ""
    score: float


class AnnotationParams(Record):
    """Parameters of one annotation run, written to ``uns['cellvec']``.

    Parameters
    ----------
    reference
        Reference name.
    version
        Reference version used.
    k
        Number of neighbours voting.
    min_confidence
        Confidence (the calibrated probability with a calibration, else the vote share) under which a cell is
        called ``"Unknown"``.
    spec
        How the query cells were turned into vectors.
    store
        Where the reference lives.
    query_species
        The query's species and how it was decided.
    orthologs
        How the query's genes were mapped onto the reference's species (``None`` for a same-species query).
    unknown_alpha
        Novelty level: cells whose novelty p-value is below it are called ``"Unknown"`` (0: off).
    calibrated
        Whether the reference's calibration was used (``False``: the plain vote, no novelty check).
    matrix
        The query matrix read: ``"X"``, ``"layers[NAME]"`` or ``"raw.X"`` (asked, or the fallback from a
        scaled ``.X``).
    query_density
        Whether the query-density novelty test ran beside the reference's (:func:`indexer.cells.query_density`).
    empirical_null
        Whether the reference's novelty p-values were read against the query's own null
        (:func:`indexer.cells.empirical_null`).
    """

    reference: str
    version: int
    k: int = Field(ge=1)
    min_confidence: float = Field(ge=0, le=1)
    spec: CellVectorSpec
    store: str
    query_species: SpeciesCall | None = None
    orthologs: OrthologReport | None = None
    unknown_alpha: float = Field(default=0.0, ge=0, le=0.5)
    calibrated: bool = False
    matrix: str = "X"
    query_density: bool = False
    empirical_null: bool = False
