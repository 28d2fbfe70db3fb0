/*
 * Unit tests: prompt_build — template by image presence, style words and
 * setting, quality wording, composition hint per aspect ratio, the custom
 * prompt, and the paragraph's tidiness.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generation.h"
#include "util.h"

static gen_params params(const char *style, const char *quality, const char *ratio)
{
    gen_params p = {0};
    snprintf(p.model, sizeof p.model, "local-studio");
    snprintf(p.style, sizeof p.style, "%s", style);
    snprintf(p.quality, sizeof p.quality, "%s", quality);
    snprintf(p.aspect_ratio, sizeof p.aspect_ratio, "%s", ratio);
    p.guidance_scale = 7.5;
    p.num_inference_steps = 50;
    p.strength = 0.8;
    p.seed = 1;
    return p;
}

/* One paragraph: no double spaces, no space before punctuation, no ",."
 * or ",,", no leading/trailing space, no newline, ends with a full stop. */
static void assert_tidy(const char *s)
{
    size_t n = strlen(s);
    cr_assert(n > 0);
    cr_assert_null(strstr(s, "  "), "double space in: %s", s);
    cr_assert_null(strstr(s, " ,"), "space before comma in: %s", s);
    cr_assert_null(strstr(s, " ."), "space before full stop in: %s", s);
    cr_assert_null(strstr(s, ",."), "dangling comma in: %s", s);
    cr_assert_null(strstr(s, ",,"), "double comma in: %s", s);
    cr_assert_null(strstr(s, ".."), "double full stop in: %s", s);
    cr_assert_null(strchr(s, '\n'), "newline in: %s", s);
    cr_assert_null(strchr(s, '\t'), "tab in: %s", s);
    cr_assert_neq(s[0], ' ');
    cr_assert_neq(s[n - 1], ' ');
    cr_assert(s[n - 1] == '.' || s[n - 1] == '!' || s[n - 1] == '?', "ends badly: %s", s);
}

static void assert_has(const char *s, const char *part)
{
    cr_assert(strstr(s, part), "'%s' not in: %s", part, s);
}

static void assert_lacks(const char *s, const char *part)
{
    cr_assert_null(strstr(s, part), "'%s' unexpectedly in: %s", part, s);
}

Test(prompt, product_and_model_template)
{
    gen_params p = params("realistic", "auto", "1:1");
    char *s = prompt_build(&p, 1, 1, NULL);
    assert_has(s, "dress the model from the model photo in the product from the product photo");
    assert_has(s, "keeping the model's face, identity, body shape and pose unchanged");
    assert_lacks(s, "mannequin");
    assert_lacks(s, "restyle");
    assert_tidy(s);
    free(s);

    s = prompt_build(&p, 3, 2, NULL);
    assert_has(s, "from the model photos in the products from the product photos");
    assert_has(s, "products' colours");
    assert_tidy(s);
    free(s);
}

Test(prompt, product_only_template)
{
    gen_params p = params("realistic", "auto", "1:1");
    char *s = prompt_build(&p, 1, 0, NULL);
    assert_has(s, "Professional fashion product photography of the product from the product photo");
    assert_has(s, "mannequin");
    assert_has(s, "flat lay");
    assert_has(s, "ghost-mannequin");
    assert_has(s, "product's colours");
    assert_lacks(s, "model's face");
    assert_tidy(s);
    free(s);

    s = prompt_build(&p, 2, 0, NULL);
    assert_has(s, "of the products from the product photos");
    assert_tidy(s);
    free(s);
}

Test(prompt, model_only_template)
{
    gen_params p = params("realistic", "auto", "1:1");
    char *s = prompt_build(&p, 0, 1, NULL);
    assert_has(s, "restyle the outfit of the model from the model photo");
    assert_has(s, "keeping the model's face, identity, body shape and pose unchanged");
    assert_lacks(s, "product photo");
    assert_tidy(s);
    free(s);
}

Test(prompt, no_images_still_gives_a_prompt)
{
    gen_params p = params("minimal", "auto", "1:1");
    char *s = prompt_build(&p, 0, 0, NULL);
    assert_has(s, "fashion photography");
    assert_tidy(s);
    free(s);
}

Test(prompt, style_words_and_setting)
{
    struct {
        const char *style;
        const char *words[6];
        const char *setting;
    } t[] = {
        {"realistic",
         {"photorealistic", "natural lighting", "professional studio photography", "high detail",
          "sharp focus", NULL},
         "Setting: clean studio with soft lighting."},
        {"artistic",
         {"creative composition", "dramatic lighting", "artistic flair", "editorial fashion", NULL},
         "Setting: artistic backdrop with dramatic shadows."},
        {"minimal",
         {"minimalist composition", "clean lines", "simple background", "elegant", NULL},
         "Setting: pure white background, minimal shadows."},
    };
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        gen_params p = params(t[i].style, "auto", "1:1");
        char *s = prompt_build(&p, 1, 0, NULL);
        for (size_t w = 0; t[i].words[w]; w++)
            assert_has(s, t[i].words[w]);
        assert_has(s, t[i].setting);
        /* Not the other styles' settings. */
        for (size_t j = 0; j < ARRAY_LEN(t); j++)
            if (j != i) assert_lacks(s, t[j].setting);
        assert_tidy(s);
        free(s);
    }
}

Test(prompt, unknown_style_falls_back_to_realistic)
{
    gen_params p = params("baroque", "auto", "1:1");
    char *s = prompt_build(&p, 1, 0, NULL);
    assert_has(s, "photorealistic");
    assert_tidy(s);
    free(s);
}

Test(prompt, high_quality_words_only_for_high)
{
    const char *words = "ultra high resolution, 8k, masterpiece quality, extremely detailed";
    const char *q[] = {"auto", "low", "medium", "high"};
    for (size_t i = 0; i < ARRAY_LEN(q); i++) {
        gen_params p = params("artistic", q[i], "16:9");
        char *s = prompt_build(&p, 1, 1, NULL);
        if (str_eq(q[i], "high")) {
            assert_has(s, words);
        } else {
            assert_lacks(s, "8k");
            assert_lacks(s, "masterpiece");
        }
        assert_tidy(s);
        free(s);
    }
}

Test(prompt, composition_hint_per_ratio)
{
    struct {
        const char *ratio, *hint;
    } t[] = {
        {"1:1", "square, centred composition"},
        {"16:9", "wide landscape composition with the subject off-centre and room for text"},
        {"9:16", "tall portrait composition, full-length framing"},
        {"3:2", "classic landscape composition"},
        {"2:3", "classic portrait composition"},
        {"4:3", "standard landscape composition"},
        {"3:4", "standard portrait composition"},
        {"4:5", "portrait composition suited to social feeds"},
    };
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        gen_params p = params("realistic", "auto", t[i].ratio);
        char *s = prompt_build(&p, 1, 0, NULL);
        char want[160];
        snprintf(want, sizeof want, "Composition: %s", t[i].hint);
        assert_has(s, want);
        for (size_t j = 0; j < ARRAY_LEN(t); j++) {
            if (j == i) continue;
            snprintf(want, sizeof want, "Composition: %s.", t[j].hint);
            if (!strstr(t[i].hint, t[j].hint)) assert_lacks(s, want);
        }
        assert_tidy(s);
        free(s);
    }
}

Test(prompt, every_ratio_has_its_own_hint)
{
    const char *r[] = {"1:1", "16:9", "9:16", "3:2", "2:3", "4:3", "3:4", "4:5"};
    char *out[ARRAY_LEN(r)];
    for (size_t i = 0; i < ARRAY_LEN(r); i++) {
        gen_params p = params("minimal", "auto", r[i]);
        out[i] = prompt_build(&p, 1, 0, NULL);
        assert_has(out[i], "Composition: ");
    }
    for (size_t i = 0; i < ARRAY_LEN(r); i++)
        for (size_t j = i + 1; j < ARRAY_LEN(r); j++)
            cr_assert_str_neq(out[i], out[j], "%s and %s give the same prompt", r[i], r[j]);
    for (size_t i = 0; i < ARRAY_LEN(r); i++)
        free(out[i]);
}

Test(prompt, custom_prompt_appended_last)
{
    gen_params p = params("realistic", "high", "4:5");
    char *s = prompt_build(&p, 1, 1, "red silk scarf, autumn park");
    const char *tail = "Additional details: red silk scarf, autumn park.";
    assert_has(s, tail);
    cr_assert_str_eq(s + strlen(s) - strlen(tail), tail, "not last: %s", s);
    assert_tidy(s);
    free(s);

    /* Own punctuation is kept; no extra full stop. */
    s = prompt_build(&p, 1, 0, "Make it pop!");
    assert_has(s, "Additional details: Make it pop!");
    assert_lacks(s, "pop!.");
    assert_tidy(s);
    free(s);
}

Test(prompt, custom_prompt_is_tidied)
{
    gen_params p = params("minimal", "auto", "1:1");
    char *s = prompt_build(&p, 1, 0, "  soft   light,\n\n  linen   texture ,  ");
    assert_has(s, "Additional details: soft light, linen texture.");
    assert_tidy(s);
    free(s);

    s = prompt_build(&p, 1, 0, "keep it simple;");
    assert_has(s, "Additional details: keep it simple.");
    assert_tidy(s);
    free(s);
}

Test(prompt, no_custom_prompt_no_additional_details)
{
    gen_params p = params("minimal", "auto", "1:1");
    const char *none[] = {NULL, "", "   \n ", " , "};
    for (size_t i = 0; i < ARRAY_LEN(none); i++) {
        char *s = prompt_build(&p, 1, 0, none[i]);
        assert_lacks(s, "Additional details");
        assert_tidy(s);
        free(s);
    }
}

Test(prompt, unicode_custom_prompt_kept)
{
    gen_params p = params("artistic", "auto", "9:16");
    char *s = prompt_build(&p, 1, 1, "cr\xc3\xa8me tones \xe2\x80\x94 caf\xc3\xa9 terrace");
    assert_has(s, "Additional details: cr\xc3\xa8me tones \xe2\x80\x94 caf\xc3\xa9 terrace.");
    assert_tidy(s);
    free(s);
}

Test(prompt, deterministic)
{
    gen_params p = params("artistic", "high", "3:2");
    char *a = prompt_build(&p, 2, 1, "evening light");
    char *b = prompt_build(&p, 2, 1, "evening light");
    cr_assert_str_eq(a, b);
    /* The seed and numeric parameters do not change the prompt. */
    p.seed = 999;
    p.guidance_scale = 3;
    char *c = prompt_build(&p, 2, 1, "evening light");
    cr_assert_str_eq(a, c);
    free(a);
    free(b);
    free(c);
}

Test(prompt, order_of_parts)
{
    gen_params p = params("realistic", "high", "16:9");
    char *s = prompt_build(&p, 1, 1, "gold buttons");
    const char *parts[] = {"Fashion photography:", "Style:", "Setting:", "Quality:", "Composition:",
                           "Additional details:"};
    const char *at = s;
    for (size_t i = 0; i < ARRAY_LEN(parts); i++) {
        const char *f = strstr(at, parts[i]);
        cr_assert(f, "'%s' missing or out of order in: %s", parts[i], s);
        at = f;
    }
    free(s);
}

Test(prompt, every_combination_is_tidy)
{
    const char *styles[] = {"realistic", "artistic", "minimal"};
    const char *q[] = {"auto", "high", "medium", "low"};
    const char *r[] = {"1:1", "16:9", "9:16", "3:2", "2:3", "4:3", "3:4", "4:5"};
    const char *custom[] = {NULL, "blue denim", "  spaced  out , "};
    for (size_t a = 0; a < ARRAY_LEN(styles); a++)
        for (size_t b = 0; b < ARRAY_LEN(q); b++)
            for (size_t c = 0; c < ARRAY_LEN(r); c++)
                for (int np = 0; np <= 2; np++)
                    for (int nm = 0; nm <= 2; nm++)
                        for (size_t d = 0; d < ARRAY_LEN(custom); d++) {
                            gen_params p = params(styles[a], q[b], r[c]);
                            char *s = prompt_build(&p, np, nm, custom[d]);
                            assert_tidy(s);
                            free(s);
                        }
}
