"""The DFlash checkpoint format both ways: export a trained drafter for vLLM / SGLang / the reference, and
start training from a published DFlash drafter (`drafter.init_from`). See docs/serving.md."""
