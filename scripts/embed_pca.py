"""PCA baseline embedding: fitted on the training cells, applied to all cells."""

from scembed.embedding import embedding_anndata
from scembed.pca import pca_embedding
from scembed.runtime import read_h5ad_parts, setup_logging, write_h5ad


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    seed = int(snakemake.wildcards.seed)
    n_components = snakemake.params.method["n_components"]
    pre = read_h5ad_parts(snakemake.input[0])  # X only: the counts layer is not needed
    train = (pre.obs["split"] == "train").to_numpy()
    scores = pca_embedding(pre.X, train, n_components, seed)
    log.info("PCA: %d components fitted on %d training cells", n_components, train.sum())
    info = {"method": snakemake.wildcards.method, "kind": "pca", "seed": seed, "device": "cpu"}
    write_h5ad(embedding_anndata(pre, scores, info), snakemake.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
