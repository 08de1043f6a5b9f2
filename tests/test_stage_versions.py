"""The study reuses a trained run or a cached evaluation only while the code that made it is the same. Each stage
has a version number (lab/config.py: TRAINING_VERSION, lab/runner.py: EVALUATION_VERSION) that is part of the
cache's key. This test keeps the numbers honest: it fingerprints the code of each stage (its syntax tree, so
comments and docstrings do not count) and fails whenever it differs from the fingerprint recorded with the
version, so no change to a stage's code goes unseen. After a change:
  - that can move a number: bump the stage's version (its cached runs or evaluations are then redone), then
  - in both cases (a pure refactor too): record the new fingerprints with
        python tests/test_stage_versions.py --record
"""
import ast
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = os.path.join(ROOT, "tests", "stage_fingerprints.json")

# file, or file:name,name (only those top-level functions, classes or constants): code that can move a number
DATA = "data.py:Split,binarize,load_dataset,DATASETS,VALIDATION_SIZE,SPLIT_SEED,BINARIZE_SEED"
STAGES = {
    "training": ("lab.config", "TRAINING_VERSION", [
        "models.py", DATA, "own_images.py", "lab/config.py:TrainConfig",
        "lab/training.py:train_model,train_epoch,finish_run,restore_training_state,train_one,clip_gradients,lr_factor,"
        "EarlyStopping,optimizer_and_schedule,check_finite,"
        "compile_loss,random_state,make_optimizer"]),
    "evaluation": ("lab.runner", "EVALUATION_VERSION", [
        "models.py", DATA, "own_images.py", "lab/config.py:EvalConfig", "lab/measures.py", "lab/evaluation.py",
        "lab/sample_measures.py", "lab/judge.py", "lab/samplers.py", "lab/seed_study.py:evaluate_run,own_grid,EVALUATION",
        "lab/beta_sweep.py:evaluate_run,EVALUATION", "lab/runner.py:evaluation_settings,run_one"]),
}


def name_of(node):
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    return getattr(node, "name", None)


def without_docstrings(tree):
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def fingerprint(sources):
    digest = hashlib.sha256()
    for source in sources:
        path, _, names = source.partition(":")
        with open(os.path.join(ROOT, path)) as f:
            tree = without_docstrings(ast.parse(f.read()))
        nodes = tree.body
        if names:
            wanted = names.split(",")
            nodes = [n for n in tree.body if name_of(n) in wanted]
            missing = set(wanted) - {name_of(n) for n in nodes}
            assert not missing, f"{path}: no top-level {', '.join(sorted(missing))} (update STAGES in {__file__})"
        digest.update(source.encode())
        for node in nodes:
            digest.update(ast.dump(node, annotate_fields=False).encode())
    return digest.hexdigest()


def current():
    import importlib
    sys.path.insert(0, ROOT)
    return {stage: {"version": getattr(importlib.import_module(module), name), "fingerprint": fingerprint(sources)}
            for stage, (module, name, sources) in STAGES.items()}


def test_a_stage_whose_code_changed_has_a_new_version_or_a_new_fingerprint():
    with open(RECORD) as f:
        recorded = json.load(f)
    for stage, now in current().items():
        before = recorded[stage]
        if now["fingerprint"] != before["fingerprint"]:
            assert False, (f"the {stage} code changed since {os.path.relpath(RECORD, ROOT)} was recorded "
                           f"(version {before['version']}): if the change can move a number, bump "
                           f"{STAGES[stage][1]}; then, either way, run `python tests/test_stage_versions.py --record`")
        assert now["version"] == before["version"], \
            f"{STAGES[stage][1]} is {now['version']} but was recorded as {before['version']}: run --record"


def test_the_fingerprint_ignores_comments_and_docstrings_but_not_code(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    (tmp_path / "m.py").write_text('def f(x):\n    """Doc."""\n    return x + 1  # one\n')
    before = fingerprint(["m.py"])
    (tmp_path / "m.py").write_text('def f(x):\n    """Another doc."""\n    # a comment\n    return x + 1\n')
    assert fingerprint(["m.py"]) == before
    (tmp_path / "m.py").write_text('def f(x):\n    return x + 2\n')
    assert fingerprint(["m.py"]) != before


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(__doc__)
    with open(RECORD, "w") as f:
        json.dump(current(), f, indent=1)
        f.write("\n")
    print(f"recorded {os.path.relpath(RECORD, ROOT)}")
