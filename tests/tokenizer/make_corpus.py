#!/usr/bin/env python3
"""make_corpus.py — writes tests/tokenizer/corpus.txt, the lines the oracle test encodes.

Everything here is written for this test (no copied web text). Lines are combined with a fixed
linear congruential generator so the output is the same on every Python version. Inside a line,
\\n \\t \\r and \\\\ are escapes that oracle.js and tokenize_lines.c expand, so multi-line strings
are covered. Usage: python3 make_corpus.py > corpus.txt
"""

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "She didn't think the server would come back after the power cut, but it did.",
    "We've measured the card at 300 watts under load; it's louder than I'd like.",
    "I'M SURE THEY'LL FIX IT IN THE NEXT DRIVER RELEASE, YOU'D HOPE.",
    "Reading the manual twice is cheaper than buying a second power supply.",
    "Our cluster sits in a cupboard under the stairs, next to the water heater.",
    "If the fan curve is wrong, the card throttles long before it reaches its cap.",
    "He said: \"Don't touch the BIOS switch while the machine is running.\"",
    "The results were surprising (at least to us): smaller batches ran faster.",
    "Latency matters more than throughput when a person is waiting for the answer.",
    "A well-tested parser never trusts the length field it just read.",
    "Mr. O'Neill's laptop—an old ThinkPad—still compiles the kernel overnight.",
    "Is it the cable, the riser, or the slot? Swap one thing at a time.",
    "The model loaded in 12 seconds, then generated 41.7 tokens per second.",
    "There are three kinds of lies: lies, damned lies, and benchmarks.",
    "Please keep the container config small; nobody reads a thousand lines.",
    "Café owners in Zürich love their espresso machines more than their GPUs.",
    "naïve coöperation between résumé writers and façade builders",
    "Ångström-scale transistors are a long way off, said the engineer.",
    "they'Re here, we'Ve seen it, it'S done, I'd rather not, you'll see",
    "Tabs\tversus\tspaces is an argument that never ends.",
    "Trailing spaces are invisible but tokenizers see them.   ",
    "   Leading spaces too, and they change the first token.",
    "A sentence with    four spaces    in the middle.",
    "Line one.\\nLine two.\\n\\nLine four after a blank line.",
    "Windows line endings\\r\\nlook like this\\r\\n",
    "Mixed\\t \\t whitespace \\n\\t  before a word",
    "Ellipsis... and dashes -- and an em dash — and quotes “like these”.",
    "Prices: $5.99, €4,50, £3.20, ¥1200 and ₹99.",
    "Email me at someone@example.org or visit https://example.org/path?q=1&x=2.",
    "The year 2024 had 366 days; 1999 did not.",
    "UPPERCASE lowercase CamelCase snake_case kebab-case SCREAMING_SNAKE",
    "It's 3:45 p.m. on 2025-01-07T15:45:00Z.",
    "¿Dónde está la biblioteca? ¡Aquí!",
    "Größe, Straße, Übermaß, Ölfass — German has long words.",
    "Œuvre, cœur, sœur et bœuf.",
    "Ça va? Très bien, merci.",
    "Hello, world!",
    "a",
    "I",
    "ok",
    "'s 't 're 've 'm 'll 'd",
    "don't won't can't shouldn't ain't y'all",
]

CHINESE = [
    "这张显卡的显存只有十六GB，跑七十亿参数的模型刚好够用。",
    "楼主你好，我的MI50装在X99主板上，驱动装好了但是rocm-smi看不到卡。",
    "有没有人遇到过功耗墙的问题？满载的时候频率一直往下掉。",
    "建议先检查电源，850W带两张卡有点勉强。",
    "我用的是Debian 12，内核版本6.1，按照官方文档装的ROCm 6.0。",
    "显存带宽比算力更重要，因为推理的时候每个token都要把权重读一遍。",
    "两张卡之间没有P2P的话，只能按层切分，速度会慢一些。",
    "回复：谢谢大佬，换了一根PCIe延长线就好了！",
    "请问量化成Q4_K_M之后精度损失大吗？",
    "风扇声音太大了，晚上根本睡不着。",
    "我把功耗限制设成了二百二十瓦，温度降了十度，速度几乎没变。",
    "这个问题在论坛里讨论过很多次了，搜索一下就能找到答案。",
    "容器里面要把/dev/kfd和/dev/dri都映射进去，不然程序找不到设备。",
    "今天终于把八卡服务器搭好了，跑分结果明天发出来。",
    "固件超时的错误日志是这样的：amdgpu: MES failed to respond。",
    "有人说是BIOS里要打开Above 4G Decoding，我试了一下确实有用。",
    "显卡温度：七十八度；风扇转速：百分之六十五；功耗：二百八十瓦。",
    "中文标点符号：，。！？；：“引号”‘单引号’（括号）【方括号】《书名号》……",
    "数字混排：第3代、共128GB、约1.5倍、价格¥4999元。",
    "你好世界",
    "他说：“这块卡是二手的，但是成色很好。”",
    "注意：不要在机器运行的时候拔插显卡！",
    "推理框架会自动选择切分方式，并且会告诉你原因。",
    "模型太大放不下的话，它会提前告诉你最多能开多长的上下文。",
]

OTHER_SCRIPTS = [
    "日本語のテキストも少し入れておきます。グラフィックボードは熱い。",
    "한국어 문장도 하나 넣습니다. 그래픽 카드가 뜨겁습니다.",
    "Русский текст: видеокарта работает, но вентилятор шумит.",
    "Ελληνικά: η κάρτα γραφικών είναι ζεστή.",
    "العربية: بطاقة الرسومات ساخنة جدا.",
    "हिन्दी: ग्राफ़िक्स कार्ड बहुत गर्म है।",
    "עברית: כרטיס המסך חם מאוד.",
    "ภาษาไทย: การ์ดจอร้อนมาก",
    "Tiếng Việt: card đồ họa rất nóng.",
]

# Decomposed forms (e + combining acute etc.): Qwen's NFC normalizer composes them.
NFD = [
    "Cafe\u0301 au lait",
    "e\u0301e\u0300e\u0302 and a\u0308o\u0308u\u0308",
    "n\u0303 in man\u0303ana",
    "\u1100\u1161\u11a8 is a Hangul syllable spelt with jamo",
]

C_CODE = [
    "#include <stdio.h>",
    "int main(int argc, char **argv)",
    "{",
    "        printf(\"hello, %s\\\\n\", argv[0]);",
    "        return 0;",
    "}",
    "static int kfd_read_node(const char *root, int node, struct kfd_node *out)",
    "        if (r < 0)\\n                return log_error_errno(r, \"reading %s: %m\", path);",
    "for (size_t i = 0; i < n; i++) {\\n\\tsum += x[i] * y[i];\\n}",
    "#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))",
    "uint64_t h = 1469598103934665603ull;",
    "x = (x >> 33) ^ 0xff51afd7ed558ccdULL;",
    "/* x: [n_tokens][n_embd], row-major */",
    "// TODO: handle the error path",
    "if (a && !b || c != d) { return -EINVAL; }",
    "struct gguf_str { const char *ptr; size_t len; };",
    "        case 0x1002: return \"AMD\";",
    "ptr->next->prev = ptr->prev; *p++ = '\\\\0';",
    "while(i<n&&s[i]==' ')i++;",
    "__global__ void matvec(const float *w, const float *x, float *y, int n_cols) { }",
]

PY_CODE = [
    "def main():\\n    print(\"hello\")\\n\\nif __name__ == \"__main__\":\\n    main()",
    "import json, os, sys",
    "    for i, line in enumerate(lines, start=1):",
    "        if not line.strip():\\n            continue",
    "x = [i ** 2 for i in range(10) if i % 2 == 0]",
    "d = {\"a\": 1, 'b': 2.5, \"c\": None, 'd': True}",
    "class Tokenizer:\\n    def __init__(self, path: str) -> None:\\n        self.path = path",
    "    return f\"{name!r} has {count:,} tokens ({ratio:.2%})\"",
    "lambda x, *args, **kwargs: x + sum(args)",
    "with open(path, encoding=\"utf-8\") as f:\\n    data = f.read()",
    "assert a == b, \"ids differ\"",
    "raise ValueError(f\"bad token id {tid}\") from None",
    "@dataclass(frozen=True)\\nclass Gpu:\\n    name: str\\n    vram_bytes: int",
    "print(*items, sep=\"\\\\t\", end=\"\\\\n\")",
    "    # comments say why, not what",
]

SH_CODE = [
    "#!/bin/sh\\nset -eu",
    "for f in *.gguf; do echo \"$f\"; done",
    "ls -la /dev/dri | grep render",
    "cat /sys/class/drm/card0/device/power1_cap 2>/dev/null || true",
    "export PATH=\"$HOME/.local/bin:$PATH\"",
    "cmake -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j\"$(nproc)\"",
    "if [ -z \"${RIG_ROOT:-}\" ]; then RIG_ROOT=/; fi",
    "awk -F: '{ print $1 }' /etc/passwd | sort | uniq -c",
    "find . -name '*.c' -exec grep -l 'TODO' {} +",
    "echo $((1 << 20)) && printf '%08x\\\\n' 255",
    "sudo pct set 101 -dev0 /dev/kfd,gid=44",
    "curl -s http://127.0.0.1:8080/v1/models | jq '.data[].id'",
]

EMOJI = [
    "🙂", "😀😃😄😁", "👍🏽", "👩🏽‍💻 writes code", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag",
    "🇩🇪🇫🇷🇯🇵🇺🇸🇨🇳", "1️⃣2️⃣3️⃣", "❤️‍🔥 burning heart", "🧑‍🚀 in space", "🐈‍⬛ black cat",
    "GPU 🔥 hot", "🚀🚀🚀 launch", "🤖: hello!", "emoji at the end 🎉", "✅ done ❌ failed ⚠️ warn",
    "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland", "👋🏻👋🏼👋🏽👋🏾👋🏿",
]

SPECIAL = [
    "<|begin_of_text|>Hello",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\nHi there<|eot_id|>",
    "text before <|begin_of_text|> and after",
    "<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>",
    "<|im_start|>assistant\\n<think>\\nLet me think.\\n</think>\\nAnswer.<|im_end|>",
    "<s>[INST] What is a GPU? [/INST]",
    "<s> leading space after s",
    "Hello</s>",
    "a<s>b</s>c",
    "<|endoftext|>",
    "<|end_of_text|> at the start",
    "almost special: <|im_start and <|begin_of_text| and <s and s>",
    "<<s>> and <|<|im_end|>|>",
    "<unk> token text",
    "<|eot_id|><|eot_id|>",
    "<tool_call>{\"name\": \"f\"}</tool_call>",
]

NUMBERS_FIXED = [
    "0", "7", "42", "123", "1234", "12345", "123456", "1234567", "3.14159", "-0.5", "1e-9",
    "6.02214076e23", "1,000,000", "1 000 000", "0x7fffffff", "0b1010", "v1.2.3", "192.168.1.254",
    "+49 30 1234567", "99.9%", "2^64 = 18446744073709551616", "٣٤٥ (Arabic-Indic digits)",
    "１２３ (fullwidth digits)", "½ ¾ ² ³", "Ⅻ Roman twelve",
]

WS = [
    "", " ", "  ", "    ", "\\t", "\\t\\t", "\\n", "\\n\\n", "\\n\\n\\n", " \\n ", "\\t \\n", "   \\n\\n   x",
    "x\\n\\n\\n\\ny", "a  b   c    d", "end with tab\\t", "\\r\\n", "  \\t  \\t  ", "word \\n",
    "\u00a0non-breaking\u00a0spaces\u00a0", "ideographic\u3000space", "x \\n  y \\n   z",
]


class Lcg:
    """Numerical Recipes LCG: reproducible everywhere, unlike random's internals."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFF

    def next(self):
        self.state = (self.state * 1664525 + 1013904223) & 0xFFFFFFFF
        return self.state >> 8

    def below(self, n):
        return self.next() % n

    def pick(self, items):
        return items[self.below(len(items))]


def numbers(rng):
    out = []
    for length in range(1, 41):
        out.append("".join(str((i * 7 + length) % 10) for i in range(length)))
    for _ in range(60):
        whole = rng.below(10 ** rng.below(9))
        frac = rng.below(10 ** (1 + rng.below(6)))
        out.append(f"{whole}.{frac}")
    for _ in range(30):
        out.append(f"{rng.below(100000)} + {rng.below(1000)} = x{rng.below(10)}")
    return out


def main():
    rng = Lcg(20240607)
    groups = [PROSE, CHINESE, OTHER_SCRIPTS, NFD, C_CODE, PY_CODE, SH_CODE, EMOJI, SPECIAL,
              NUMBERS_FIXED, numbers(rng), WS]
    lines = [line for g in groups for line in g]
    seps = [" ", "", "\\n", "\\t", "  ", " \\n", ", ", "\\n\\n"]
    # combinations make the boundaries between kinds of text (code next to Chinese next to emoji)
    while len(lines) < 2400:
        parts = [rng.pick(rng.pick(groups)) for _ in range(1 + rng.below(3))]
        line = parts[0]
        for p in parts[1:]:
            line += rng.pick(seps) + p
        lines.append(line)
    for line in lines:
        assert "\n" not in line and "\u2581" not in line
        print(line)


if __name__ == "__main__":
    main()
