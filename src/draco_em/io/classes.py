"""Micrograph class names shared by the label files (:mod:`draco_em.io.labels`), the curation
configs and evaluation; its own light module so that the command line can import the configs
without pandas."""

#: The class of a micrograph worth keeping (the default accept class of curation).
GOOD = "good"
