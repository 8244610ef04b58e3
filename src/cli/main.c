/* main.c: the dsc command: dispatches to subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "dsc %s: the DeepSeek language-model stack in C\n"
            "usage: dsc <command> [options]\n\n"
            "commands:\n"
            "  info       parameters, FLOPs and KV-cache size of a preset, config or model\n"
            "  init       write a randomly initialised model directory (config.json + model.safetensors)\n"
            "  forward    write the logits of every position of a token list\n"
            "  tokenizer  train a byte-level BPE tokenizer (tokenizer train)\n"
            "  tokenize   text -> token ids, or ids -> text (--decode)\n"
            "  data       prepare token shards from text and generated problems; export problems\n"
            "  train      pretrain a model on prepared data (checkpoints, metrics, loss plot, resume)\n"
            "  sample     generate text from a trained model\n"
            "  generate   fast generation (latent KV cache; ids or text; speculative with MTP)\n"
            "  chat       interactive chat with DeepSeek's template, reasoning shown apart\n"
            "  export     write a model as a Hugging Face directory (--hf: f32/bf16/fp8 shards) or GGUF (--gguf)\n"
            "  quantize   store a model's weights as f32, bf16 or DeepSeek fp8 (a Hugging Face directory)\n"
            "  sft        supervised fine-tuning on JSONL chat data, loss on assistant tokens only\n"
            "  grpo       reinforcement learning with GRPO and rule-based rewards (arithmetic, countdown, JSONL)\n"
            "  eval       a model's accuracy on a task's held-out problems (greedy or pass@1)\n"
            "  help       this text; 'dsc <command> --help' for a command's options\n",
            DSC_VERSION);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("dsc %s\n", DSC_VERSION);
        return 0;
    }
    for (const dsc_command *c = dsc_commands; c->name; c++)
        if (!strcmp(c->name, cmd)) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "dsc: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
