"""csvr_jax: JAX/Flax implementation of CSVR self-supervised video representation learning."""
