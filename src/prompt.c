/*
 * prompt — the optimized prompt for a generation, after the original
 * product's generateOptimizedPrompt (@/constants/prompts): a base template
 * chosen by which images are present, the style's modifiers and setting,
 * quality wording for "high", a composition hint for the aspect ratio, and
 * the user's custom prompt last ("Additional details: ...").
 *
 * The result is one paragraph of sentences, deterministic for its inputs:
 *
 *   <base sentence>. Style: <modifiers>. Setting: <setting>.
 *   [Quality: <words>.] Composition: <hint>. [Additional details: <text>.]
 *
 * The custom prompt's whitespace runs (newlines included) collapse to one
 * space, and trailing commas, semicolons and colons are dropped, so the
 * paragraph never holds double spaces or dangling commas. An unknown style
 * falls back to realistic; an unknown aspect ratio gets no hint (validation
 * in generation.c keeps both from happening).
 */
#include <stdlib.h>
#include <string.h>

#include "generation.h"
#include "util.h"

typedef struct style_words {
    const char *name;
    const char *modifiers;
    const char *setting;
} style_words;

static const style_words style_table[] = {
    {"realistic",
     "photorealistic, natural lighting, professional studio photography, high detail, sharp focus",
     "clean studio with soft lighting"},
    {"artistic", "creative composition, dramatic lighting, artistic flair, editorial fashion",
     "artistic backdrop with dramatic shadows"},
    {"minimal", "minimalist composition, clean lines, simple background, elegant",
     "pure white background, minimal shadows"},
};

static const char *const high_quality_words =
    "ultra high resolution, 8k, masterpiece quality, extremely detailed";

typedef struct ratio_hint {
    const char *ratio;
    const char *hint;
} ratio_hint;

static const ratio_hint ratio_table[] = {
    {"1:1", "square, centred composition"},
    {"16:9", "wide landscape composition with the subject off-centre and room for text"},
    {"9:16", "tall portrait composition, full-length framing"},
    {"3:2", "classic landscape composition with the subject framed at three-quarter length"},
    {"2:3", "classic portrait composition, full-length framing with room above and below"},
    {"4:3", "standard landscape composition with balanced space around the subject"},
    {"3:4", "standard portrait composition with the subject filling the frame"},
    {"4:5", "portrait composition suited to social feeds"},
};

static const style_words *find_style(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(style_table); i++)
        if (str_eq(name, style_table[i].name)) return &style_table[i];
    return &style_table[0];
}

static const char *find_ratio_hint(const char *ratio)
{
    for (size_t i = 0; i < ARRAY_LEN(ratio_table); i++)
        if (str_eq(ratio, ratio_table[i].ratio)) return ratio_table[i].hint;
    return NULL;
}

static void put(buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

static void base_sentence(buf *b, int n_products, int n_models)
{
    const char *products = n_products > 1 ? "products" : "product";
    const char *products_of = n_products > 1 ? "products'" : "product's";
    const char *product_photos = n_products > 1 ? "product photos" : "product photo";
    const char *model_photos = n_models > 1 ? "model photos" : "model photo";

    if (n_products > 0 && n_models > 0)
        buf_printf(b,
                   "Fashion photography: dress the model from the %s in the %s from the %s, "
                   "fitted naturally with realistic drape, folds and proportions, keeping the "
                   "model's face, identity, body shape and pose unchanged and reproducing the "
                   "%s colours, fabric, patterns and details exactly.",
                   model_photos, products, product_photos, products_of);
    else if (n_products > 0)
        buf_printf(b,
                   "Professional fashion product photography of the %s from the %s, presented "
                   "on a mannequin, as a flat lay or as a ghost-mannequin shot, reproducing the "
                   "%s colours, fabric, patterns and details exactly.",
                   products, product_photos, products_of);
    else if (n_models > 0)
        buf_printf(b,
                   "Fashion photography: restyle the outfit of the model from the %s into a "
                   "fresh, coordinated look, keeping the model's face, identity, body shape and "
                   "pose unchanged.",
                   model_photos);
    else
        put(b, "Professional fashion photography of a stylish outfit.");
}

/* The custom prompt with whitespace runs collapsed, trimmed, and trailing
 * ",;:" dropped; appended as its own sentence. Nothing when it is empty. */
static void custom_sentence(buf *b, const char *custom)
{
    if (!custom) return;
    buf t = {0};
    bool space = false;
    for (const char *c = custom; *c; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v') {
            space = t.len > 0;
            continue;
        }
        if (space) buf_append(&t, " ", 1);
        space = false;
        buf_append(&t, c, 1);
    }
    while (t.len > 0 && strchr(",;: ", t.data[t.len - 1]))
        t.data[--t.len] = '\0';
    if (t.len > 0) {
        put(b, " Additional details: ");
        buf_append(b, t.data, t.len);
        if (!strchr(".!?", t.data[t.len - 1])) put(b, ".");
    }
    buf_free(&t);
}

char *prompt_build(const gen_params *p, int n_product_images, int n_model_images,
                   const char *custom_prompt)
{
    buf b = {0};
    const style_words *st = find_style(p->style);

    base_sentence(&b, n_product_images, n_model_images);
    buf_printf(&b, " Style: %s. Setting: %s.", st->modifiers, st->setting);
    if (str_eq(p->quality, "high")) buf_printf(&b, " Quality: %s.", high_quality_words);
    const char *hint = find_ratio_hint(p->aspect_ratio);
    if (hint) buf_printf(&b, " Composition: %s.", hint);
    custom_sentence(&b, custom_prompt);
    return b.data; /* caller frees */
}
