from ikv_local.facts import parse_cache_layers, parse_print_info, per_layer


def test_print_info_lines_become_a_dict():
    lines = [
        "print_info: n_layer               = 4",
        "print_info: n_head_kv             = [1, 2, 2, 1]",
        "print_info: freq_base_train       = 1000000.0",
        "print_info: rope scaling          = linear",
        "load: something else = 3",
    ]
    info = parse_print_info(lines)
    assert info == {
        "n_layer": "4",
        "n_head_kv": "[1, 2, 2, 1]",
        "freq_base_train": "1000000.0",
        "rope scaling": "linear",
    }
    assert per_layer(info["n_head_kv"], 4) == [1, 2, 2, 1]
    assert per_layer("8", 3) == [8, 8, 8]


def test_cache_layers_split_by_iswa_sections():
    lines = [
        "llama_kv_cache_iswa: creating non-SWA KV cache, size = 512 cells",
        "llama_kv_cache: layer   5: dev = CPU",
        "llama_kv_cache: layer  11: dev = CPU",
        "llama_kv_cache_iswa: creating     SWA KV cache, size = 512 cells",
        "llama_kv_cache: layer   0: dev = CPU",
        "llama_kv_cache: layer   1: dev = CPU",
    ]
    assert parse_cache_layers(lines) == ([5, 11], [0, 1])


def test_single_cache_means_no_swa_layers():
    lines = ["llama_kv_cache: layer   0: dev = CPU", "llama_kv_cache: layer   1: dev = CUDA0"]
    assert parse_cache_layers(lines) == ([0, 1], [])
