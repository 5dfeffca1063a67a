/* Prints sizeof and offsetof for every struct in dalle.h, in the format of
 * abi_layout.txt; run_c_and_python.sh diffs the two, and CAPITests.swift checks the same
 * file against Swift's MemoryLayout, and tests/python against ctypes. */
#include <stddef.h>
#include <stdio.h>
#include "dalle.h"

#define FIELD(s, f) printf(" %s %zu", #f, offsetof(s, f))

int main(void) {
    printf("dalle_image %zu", sizeof(dalle_image));
    FIELD(dalle_image, width); FIELD(dalle_image, height); FIELD(dalle_image, channels); FIELD(dalle_image, data);
    printf("\ndalle_image_batch %zu", sizeof(dalle_image_batch));
    FIELD(dalle_image_batch, count); FIELD(dalle_image_batch, images);
    printf("\ndalle_tokens %zu", sizeof(dalle_tokens));
    FIELD(dalle_tokens, count); FIELD(dalle_tokens, rows); FIELD(dalle_tokens, cols); FIELD(dalle_tokens, data);
    printf("\ndalle_model_params %zu", sizeof(dalle_model_params));
    FIELD(dalle_model_params, struct_size); FIELD(dalle_model_params, progress);
    FIELD(dalle_model_params, progress_user_data);
    printf("\ndalle_model_info %zu", sizeof(dalle_model_info));
    FIELD(dalle_model_info, struct_size); FIELD(dalle_model_info, components); FIELD(dalle_model_info, image_size);
    FIELD(dalle_model_info, image_channels); FIELD(dalle_model_info, token_grid_size);
    FIELD(dalle_model_info, codebook_size); FIELD(dalle_model_info, n_params); FIELD(dalle_model_info, cond_scale);
    FIELD(dalle_model_info, likelihood_weight);
    printf("\ndalle_component_info %zu", sizeof(dalle_component_info));
    FIELD(dalle_component_info, struct_size); FIELD(dalle_component_info, component);
    FIELD(dalle_component_info, capabilities); FIELD(dalle_component_info, reserved);
    FIELD(dalle_component_info, n_params); FIELD(dalle_component_info, name); FIELD(dalle_component_info, variant);
    printf("\ndalle_context_params %zu", sizeof(dalle_context_params));
    FIELD(dalle_context_params, struct_size); FIELD(dalle_context_params, n_threads); FIELD(dalle_context_params, seed);
    FIELD(dalle_context_params, progress); FIELD(dalle_context_params, progress_user_data);
    printf("\ndalle_generate_params %zu", sizeof(dalle_generate_params));
    FIELD(dalle_generate_params, struct_size); FIELD(dalle_generate_params, count); FIELD(dalle_generate_params, seed);
    FIELD(dalle_generate_params, temperature); FIELD(dalle_generate_params, top_k); FIELD(dalle_generate_params, top_p);
    FIELD(dalle_generate_params, cond_scale); FIELD(dalle_generate_params, prime_rows);
    FIELD(dalle_generate_params, prime_tokens); FIELD(dalle_generate_params, progress);
    FIELD(dalle_generate_params, progress_user_data); FIELD(dalle_generate_params, keep_best);
    FIELD(dalle_generate_params, out_scores); FIELD(dalle_generate_params, out_log_likelihoods);
    FIELD(dalle_generate_params, likelihood_weight);
    FIELD(dalle_generate_params, prior_steps); FIELD(dalle_generate_params, decoder_steps);
    FIELD(dalle_generate_params, super_res_steps); FIELD(dalle_generate_params, prior_guidance);
    FIELD(dalle_generate_params, decoder_guidance);
    FIELD(dalle_generate_params, noise_path);
    FIELD(dalle_generate_params, noise_data);
    FIELD(dalle_generate_params, noise_size);
    FIELD(dalle_generate_params, init_image);
    FIELD(dalle_generate_params, interpolate_to);
    FIELD(dalle_generate_params, interpolate_to_image);
    printf("\ndalle_generate_info %zu", sizeof(dalle_generate_info));
    FIELD(dalle_generate_info, struct_size); FIELD(dalle_generate_info, prompt_tokens);
    FIELD(dalle_generate_info, truncated_tokens); FIELD(dalle_generate_info, generated_tokens);
    FIELD(dalle_generate_info, seed); FIELD(dalle_generate_info, unknown_words);
    printf("\ndalle_eval_params %zu", sizeof(dalle_eval_params));
    FIELD(dalle_eval_params, struct_size); FIELD(dalle_eval_params, candidates); FIELD(dalle_eval_params, seed);
    FIELD(dalle_eval_params, per_template); FIELD(dalle_eval_params, per_held_out_pair);
    FIELD(dalle_eval_params, reconstruction_samples); FIELD(dalle_eval_params, temperature);
    FIELD(dalle_eval_params, top_k); FIELD(dalle_eval_params, top_p); FIELD(dalle_eval_params, cond_scale);
    FIELD(dalle_eval_params, progress); FIELD(dalle_eval_params, progress_user_data);
    FIELD(dalle_eval_params, likelihood_weight);
    printf("\ndalle_eval_group %zu", sizeof(dalle_eval_group));
    FIELD(dalle_eval_group, captions); FIELD(dalle_eval_group, candidates); FIELD(dalle_eval_group, passed_best_by_clip);
    FIELD(dalle_eval_group, passed_candidates); FIELD(dalle_eval_group, passed_any);
    printf("\ndalle_eval_report %zu", sizeof(dalle_eval_report));
    FIELD(dalle_eval_report, struct_size); FIELD(dalle_eval_report, has_clip); FIELD(dalle_eval_report, one_object);
    FIELD(dalle_eval_report, counting); FIELD(dalle_eval_report, relation); FIELD(dalle_eval_report, held_out);
    FIELD(dalle_eval_report, total); FIELD(dalle_eval_report, reconstruction_images);
    FIELD(dalle_eval_report, reconstruction_passed);
    printf("\ndalle_bundle_params %zu", sizeof(dalle_bundle_params));
    FIELD(dalle_bundle_params, struct_size); FIELD(dalle_bundle_params, weight_type); FIELD(dalle_bundle_params, cond_scale);
    FIELD(dalle_bundle_params, likelihood_weight);
    printf("\ndalle_train_params %zu", sizeof(dalle_train_params));
    FIELD(dalle_train_params, struct_size); FIELD(dalle_train_params, n_threads); FIELD(dalle_train_params, stage); FIELD(dalle_train_params, data); FIELD(dalle_train_params, out_path); FIELD(dalle_train_params, tokenizer_path); FIELD(dalle_train_params, dvae_path); FIELD(dalle_train_params, config); FIELD(dalle_train_params, steps); FIELD(dalle_train_params, batch_size); FIELD(dalle_train_params, learning_rate); FIELD(dalle_train_params, warmup_steps); FIELD(dalle_train_params, weight_decay); FIELD(dalle_train_params, gradient_clip); FIELD(dalle_train_params, seed); FIELD(dalle_train_params, validation_count); FIELD(dalle_train_params, checkpoint_every); FIELD(dalle_train_params, vocab_size); FIELD(dalle_train_params, progress); FIELD(dalle_train_params, progress_user_data); FIELD(dalle_train_params, dvae_schedule); FIELD(dalle_train_params, init_path); FIELD(dalle_train_params, freeze); FIELD(dalle_train_params, caption_dropout); FIELD(dalle_train_params, caption_negatives);
    printf("\n");
    return 0;
}
