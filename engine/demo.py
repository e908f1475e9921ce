"""The offline demo model: a tiny random InternLM2 that can learn the tutorial's answers.

Built in seconds, with no network and no model hub, deterministically (seeded):

- the InternLM2 modelling code that xtuner 0.2.0 itself ships
  (``xtuner/_lite/modelings/internlm2/``) is copied into the folder and ``config.json`` names
  it in ``auto_map``, so ``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)``
  takes the same code path as the tutorial's ``internlm2-chat-1_8b``;
- a byte-level BPE tokenizer (vocab ~2000) trained offline on the tutorial's questions and
  answers, some English and common Chinese characters, with the InternLM2 special tokens and
  chat template, saved as a ``PreTrainedTokenizerFast``;
- weights in ``model.safetensors``; ``initializer_range=0.1`` (with 0.02 the frozen random
  lm_head caps the logits and the LoRA loss stalls near 2.7).

A second demo model, ``demo-qwen2`` (``--arch qwen2``), is the same size and tokenizer text as a
transformers-native ``Qwen2ForCausalLM`` (no remote code, two KV heads, q/k/v biases) with Qwen's
special tokens, a ``Qwen2TokenizerFast`` (xtuner adds no bos for it, as for Qwen1.5) and the
``qwen_chat`` layout; xtuner trains it with its Qwen1.5 built-in configs.

Everything heavy (torch, transformers, tokenizers) is imported inside the functions.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import WizardError
from engine.workspace import atomic_write
from engine.xtuner_env import xtuner_package_dir

if TYPE_CHECKING:
    from engine.workspace import Workspace

DEMO_VERSION = 1
MARKER = "demo-model.json"  # written last: its presence means the folder is complete

REMOTE_CODE_FILES = ("configuration_internlm2.py", "modeling_internlm2.py")

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|pad|>")
UNK, BOS, EOS, IM_START, IM_END, PAD = SPECIAL_TOKENS

VOCAB_SIZE = 2000

# The demo models by architecture: the choice a user types (``--model demo-qwen2``) and the
# workspace folder it is built in.
ARCHS = ("internlm2", "qwen2")
DEMO_CHOICES = {"demo": "internlm2", "demo-qwen2": "qwen2"}
DEMO_FOLDERS = {"internlm2": "demo-model", "qwen2": "demo-qwen2"}
ARCHITECTURES = {"internlm2": "InternLM2ForCausalLM", "qwen2": "Qwen2ForCausalLM"}

# Qwen2's special tokens (Qwen1.5-Chat: no bos, eos <|im_end|>, pad <|endoftext|>).
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN_ENDOFTEXT = "<|endoftext|>"
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# The chat template of internlm2-chat-1_8b (tokenizer_config.json there).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

MODEL_DIMS = {
    "hidden_size": 256,
    "intermediate_size": 704,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "initializer_range": 0.1,
    "rms_norm_eps": 1e-5,
    "rope_theta": 1000000,
    "bias": False,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
}

# The Qwen2 demo: the same size, but grouped-query attention (4 heads, 2 KV heads) and Qwen2's
# q/k/v biases, so the fast engine's GQA and bias paths run too.
QWEN2_DIMS = {
    **{k: v for k, v in MODEL_DIMS.items() if k != "bias"},
    "num_key_value_heads": 2,
    "use_sliding_window": False,
}

# --- the tokenizer's training text --------------------------------------------------------
# The tutorial (xtuner_generate_assistant.py and the edited config's evaluation_inputs).
TUTORIAL_TEXT = [
    "请介绍一下你自己",
    "你在实战营做什么",
    "我是{name}的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦",
    "我在这里帮助{name}完成XTuner微调个人小助手的任务",
    "Please introduce yourself",
    "请给我介绍五个上海的景点",
    "Please tell me five scenic spots in Shanghai",
    "你是谁",
    "你好",
    "Who are you?",
    "What can you do?",
]
NAMES = ["伍鲜同志", "机智流", "小明", "张三", "李四", "Alice", "Bob", "InternLM", "XTuner"]
ENGLISH = (
    "I am an assistant. I am here to help you with the task of fine-tuning a model. "
    "The quick brown fox jumps over the lazy dog. Hello, how are you today? "
    "This is a small language model built offline for a demonstration of XTuner. "
    "Shanghai AI Laboratory InternLM chat model, fine-tune with LoRA and QLoRA. "
    "What is your name? Where do you live? Thank you very much. 0123456789 "
    "system user assistant config train merge convert adapter dataset json "
)
# Common Chinese characters (by frequency), so everyday text is not all raw bytes.
COMMON_HANZI = (
    "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对"
    "可里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同"
    "三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名"
    "定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内"
    "加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原"
    "车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战"
    "干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连"
    "远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转"
    "量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找"
    "友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离"
    "虽坏兴切养，。！？、：；“”（）《》"
)


def _training_text() -> list[str]:
    lines: list[str] = []
    for name in NAMES:
        for text in TUTORIAL_TEXT:
            lines.append(text.format(name=name))
    # The answers repeated, so BPE merges them into long tokens: fewer tokens to learn.
    lines += [t.format(name=n) for t in TUTORIAL_TEXT[2:4] for n in NAMES[:2]] * 20
    lines += [ENGLISH] * 5
    hanzi = COMMON_HANZI
    lines += [hanzi[i : i + 40] for i in range(0, len(hanzi), 40)] * 3
    return lines


# --- building ------------------------------------------------------------------------------
def _remote_code_source() -> Path:
    pkg = xtuner_package_dir()
    src = pkg / "_lite" / "modelings" / "internlm2" if pkg else None
    if src is None or not all((src / f).is_file() for f in REMOTE_CODE_FILES):
        raise WizardError(
            "xtuner 0.2.0's InternLM2 modelling code was not found",
            where="xtuner/_lite/modelings/internlm2",
            fix="install xtuner==0.2.0 (make run sets it up)",
        )
    return src


def build_tokenizer(out_dir: Path, arch: str = "internlm2"):
    """Train the byte-level BPE tokenizer and save it into ``out_dir``; returns it.

    ``internlm2``: InternLM2's special tokens, a bos before every text, a
    ``PreTrainedTokenizerFast``; ``qwen2``: Qwen's, no bos, a ``Qwen2TokenizerFast`` (the class
    name is how xtuner knows to add no bos).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2TokenizerFast

    specials = QWEN_SPECIAL_TOKENS if arch == "qwen2" else SPECIAL_TOKENS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    if arch == "qwen2":
        fast = Qwen2TokenizerFast(
            tokenizer_object=tok,
            unk_token=None,
            bos_token=None,
            eos_token=IM_END,
            pad_token=QWEN_ENDOFTEXT,
            additional_special_tokens=[IM_START, IM_END],
            model_max_length=QWEN2_DIMS["max_position_embeddings"],
            clean_up_tokenization_spaces=False,
        )
        fast.chat_template = QWEN_CHAT_TEMPLATE
        fast.save_pretrained(str(out_dir))
        return fast
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A:0",
        pair=f"{BOS} $A:0 {BOS} $B:1",
        special_tokens=[(BOS, tok.token_to_id(BOS))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=MODEL_DIMS["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))
    return fast


Progress = Callable[[int, int, str], None]  # (stage, number of stages, what is happening)
STAGES = (
    "copying xtuner's InternLM2 code",
    "training the tokenizer",
    "initialising the weights",
    "saving the weights",
)


def _check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise WizardError(
            f"no demo model of architecture {arch!r}",
            where="--arch",
            fix=f"use one of {', '.join(ARCHS)}",
        )
    return arch


def build_demo_model(
    out_dir: Path,
    *,
    seed: int = 0,
    on_progress: Progress | None = None,
    arch: str = "internlm2",
) -> Path:
    """Build the demo model into ``out_dir`` (created; must be empty or absent). Returns it.

    ``arch``: ``internlm2`` (xtuner's remote code) or ``qwen2`` (transformers' own class).
    ``on_progress(stage, stages, message)`` is called as each stage starts, and with
    ``stage == stages`` when done.
    """
    _check_arch(arch)
    stages = STAGES if arch == "internlm2" else ("writing the Qwen2 config", *STAGES[1:])

    def progress(stage: int) -> None:
        if on_progress is not None:
            on_progress(stage, len(stages), stages[stage] if stage < len(stages) else "done")

    progress(0)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise WizardError(
            "the folder is not empty; not building the demo model over it",
            where=str(out_dir),
            fix="pick a new folder, or remove this one",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    if arch == "internlm2":
        src = _remote_code_source()
        for name in REMOTE_CODE_FILES:
            shutil.copyfile(src / name, out_dir / name)

    progress(1)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    tokenizer = build_tokenizer(out_dir, arch)
    if arch == "qwen2":
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
        config = {
            "architectures": [ARCHITECTURES[arch]],
            "model_type": "qwen2",
            "vocab_size": len(tokenizer),
            "bos_token_id": None,
            "eos_token_id": ids[IM_END],
            "pad_token_id": ids[QWEN_ENDOFTEXT],
            "torch_dtype": "float32",
            "use_cache": True,
            "rope_scaling": None,
            "attention_dropout": 0.0,
            **QWEN2_DIMS,
        }
        generation = GenerationConfig(
            eos_token_id=[ids[IM_END], ids[QWEN_ENDOFTEXT]],
            pad_token_id=ids[QWEN_ENDOFTEXT],
            do_sample=False,
            max_new_tokens=64,
        )
    else:
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
        config = {
            "architectures": [ARCHITECTURES[arch]],
            "auto_map": {
                "AutoConfig": "configuration_internlm2.InternLM2Config",
                "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
                "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
            },
            "model_type": "internlm2",
            "vocab_size": len(tokenizer),
            "bos_token_id": ids[BOS],
            "eos_token_id": ids[EOS],
            "pad_token_id": ids[PAD],
            "attn_implementation": "eager",
            "torch_dtype": "float32",
            "use_cache": True,
            "rope_scaling": None,
            **MODEL_DIMS,
        }
        generation = GenerationConfig(
            bos_token_id=ids[BOS],
            eos_token_id=[ids[EOS], ids[IM_END]],
            pad_token_id=ids[PAD],
            do_sample=False,
            max_new_tokens=64,
        )
    atomic_write(out_dir / "config.json", json.dumps(config, indent=2))

    progress(2)
    remote = arch == "internlm2"
    cfg = AutoConfig.from_pretrained(str(out_dir), trust_remote_code=remote)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(
            cfg, trust_remote_code=remote, torch_dtype=torch.float32
        )
    progress(3)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    # save_pretrained rewrote config.json; keep ours (no machine-specific paths).
    atomic_write(out_dir / "config.json", json.dumps(config, indent=2))
    generation.save_pretrained(str(out_dir))
    n_params = sum(p.numel() for p in model.parameters())
    atomic_write(
        out_dir / MARKER,
        json.dumps(
            {
                "demo_version": DEMO_VERSION,
                "seed": seed,
                "architecture": ARCHITECTURES[arch],
                "parameters": n_params,
                "vocab_size": len(tokenizer),
            },
            indent=2,
        ),
    )
    for f in out_dir.iterdir():
        f.chmod(0o644)
    progress(len(stages))
    return out_dir


def is_complete(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a finished demo model of this version."""
    try:
        info = json.loads((Path(model_dir) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict):
        return False
    needed = ["config.json", "model.safetensors", "tokenizer.json"]
    if info.get("architecture", ARCHITECTURES["internlm2"]) == ARCHITECTURES["internlm2"]:
        needed += REMOTE_CODE_FILES
    return info.get("demo_version") == DEMO_VERSION and all(
        (Path(model_dir) / f).is_file() for f in needed
    )


def describe(model_dir: Path) -> dict:
    """What the marker file records (architecture, parameters, vocab size, seed)."""
    return json.loads((Path(model_dir) / MARKER).read_text(encoding="utf-8"))


def demo_arch(choice: object) -> str | None:
    """The architecture of a demo choice (``demo`` -> internlm2, ``demo-qwen2`` -> qwen2), or
    None for anything else (a path)."""
    return DEMO_CHOICES.get(choice) if isinstance(choice, str) else None


def demo_dir(ws: Workspace, arch: str = "internlm2") -> Path:
    """Where the workspace's demo model of ``arch`` lives (``demo-model/``, ``demo-qwen2/``)."""
    return ws.root / DEMO_FOLDERS[_check_arch(arch)]


def choice_dir(ws: Workspace, choice: object) -> Path | None:
    """The folder of a demo choice (built or not), None when ``choice`` is not one."""
    arch = demo_arch(choice)
    return demo_dir(ws, arch) if arch else None


STALE_BUILD_S = 600  # a build takes seconds: a temp folder older than this was left by a kill


def remove_stale_builds(target: Path, *, older_than: float = STALE_BUILD_S) -> list[Path]:
    """Remove the ``.<name>.*`` temp folders a killed build left beside ``target`` (not a
    build that may still be running: only folders untouched for ``older_than`` seconds)."""
    removed = []
    for tmp in target.parent.glob(f".{target.name}.*"):
        try:
            stale = tmp.is_dir() and time.time() - tmp.stat().st_mtime > older_than
        except OSError:
            continue
        if stale:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def ensure_demo_model(
    ws: Workspace,
    *,
    seed: int = 0,
    on_progress: Progress | None = None,
    arch: str = "internlm2",
) -> Path:
    """The workspace's demo model folder of ``arch``, built first if missing or incomplete."""
    target = demo_dir(ws, arch)
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build_demo_model(tmp / "m", seed=seed, on_progress=on_progress, arch=arch)
        if target.exists():
            shutil.rmtree(target)  # an incomplete build of ours: the marker is missing
        (tmp / "m").rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
