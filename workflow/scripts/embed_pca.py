"""PCA baseline embedding: fitted on the training cells, applied to all cells; with
``use_batch`` on a dataset with a ``batch_key``, Harmony's integration of those scores."""

from scembed.batches import batch_codes, batch_key_of, uses_batch
from scembed.embedding import embedding_anndata
from scembed.pca import harmony_scores, pca_embedding
from scembed.runtime import read_h5ad_parts, setup_logging, write_h5ad


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    seed = int(snakemake.wildcards.seed)
    method = snakemake.params.method
    n_components = method["n_components"]
    pre = read_h5ad_parts(snakemake.input[0])  # X only: the counts layer is not needed
    train = (pre.obs["split"] == "train").to_numpy()
    scores = pca_embedding(pre.X, train, n_components, seed)
    log.info("PCA: %d components fitted on %d training cells", n_components, train.sum())
    info = {"method": snakemake.wildcards.method, "kind": "pca", "seed": seed, "device": "cpu"}
    key = batch_key_of(pre)
    if key is not None and uses_batch(method):
        batch, names = batch_codes(pre.obs, key)
        scores = harmony_scores(scores, batch, seed, threads=snakemake.threads)
        log.info(
            "Harmony (harmonypy) on the scores of all %d cells: obs[%r], %d batches, seed %d",
            len(batch),
            key,
            len(names),
            seed,
        )
        info.update(harmony=True, batch_key=key, batches=names)
    else:
        log.info("batch: not used (%s)", "no batch_key" if key is None else "use_batch: false")
    write_h5ad(embedding_anndata(pre, scores, info), snakemake.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
