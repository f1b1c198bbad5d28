(* xenguest-ocaml: the build modes of the xenguest command line, done in-process by the OCaml
   module on the real host (Xenguest.interface_open), as xenopsd will call it. For the e2e
   test toolstack, which runs it with the same argv as the binary: the result line goes to
   -controloutfd, errors to stderr with exit status 1. Only the options a build takes. *)

let usage () =
  prerr_endline
    "usage: xenguest-ocaml -mode hvm_build|pvh_build|linux_build -domid D -image I \
     -mem_max_mib M -mem_start_mib S -store_port P -console_port P [-store_domid D] \
     [-console_domid D] [-cmdline C] [-ramdisk R] [-module M [-cmdline C]]... [-features F] \
     [-flags N] [-controloutfd FD] [-controlinfd FD]";
  exit 1

let () =
  let opts = Hashtbl.create 16 in
  let cmdlines = ref [] and modules = ref [] in
  let rec parse = function
    | [] -> ()
    | "-cmdline" :: v :: rest -> cmdlines := v :: !cmdlines; parse rest
    | "-module" :: v :: rest -> modules := v :: !modules; parse rest
    | key :: v :: rest when String.length key > 1 && key.[0] = '-' ->
        Hashtbl.replace opts (String.sub key 1 (String.length key - 1)) v;
        parse rest
    | _ -> usage ()
  in
  parse (List.tl (Array.to_list Sys.argv));
  let str k = try Hashtbl.find opts k with Not_found -> Printf.eprintf "missing -%s\n" k; usage () in
  let int k = try int_of_string (str k) with Failure _ -> Printf.eprintf "bad -%s\n" k; usage () in
  let int_or k d = if Hashtbl.mem opts k then int k else d in
  (* The C pairing: the first -cmdline is the kernel's, the n-th further one the n-th module's. *)
  let kernel_cmdline, module_cmdlines =
    match List.rev !cmdlines with [] -> ("", []) | c :: rest -> (c, rest)
  in
  let modules =
    List.mapi
      (fun i m -> (m, Option.value (List.nth_opt module_cmdlines i) ~default:""))
      (List.rev !modules)
  in
  let args =
    {
      (Xenguest.args ~domid:(int "domid") ~mem_max_mib:(int "mem_max_mib")
         ~mem_start_mib:(int "mem_start_mib") ~image:(str "image") ~store_port:(int "store_port")
         ~console_port:(int "console_port"))
      with
      Xenguest.cmdline = kernel_cmdline;
      ramdisk = (match Hashtbl.find_opt opts "ramdisk" with Some "" | None -> None | r -> r);
      modules;
      features = Option.value (Hashtbl.find_opt opts "features") ~default:"";
      flags = int_or "flags" 0;
      store_domid = int_or "store_domid" 0;
      console_domid = int_or "console_domid" 0;
    }
  in
  let build =
    match str "mode" with
    | "hvm_build" -> Xenguest.hvm_build
    | "pvh_build" -> Xenguest.pvh_build
    | "linux_build" | "pv_build" -> Xenguest.pv_build
    | m -> Printf.eprintf "unknown mode %s\n" m; usage ()
  in
  match
    let h = Xenguest.interface_open () in
    Fun.protect ~finally:(fun () -> Xenguest.close h) (fun () -> build h args)
  with
  | r, report ->
      let line =
        Printf.sprintf "result:%nd %nd%s\n" r.Xenguest.store_mfn r.console_mfn
          (match r.protocol with Some p -> " " ^ p | None -> "")
      in
      Printf.eprintf "xenguest-ocaml: built domain %d in %d us, %d populate calls\n%!"
        args.domid report.Xenguest.elapsed_us report.populate_calls;
      (match Hashtbl.find_opt opts "controloutfd" with
       | Some fd ->
           (* The inherited pipe, opened again through procfs (OCaml has no fdopen). *)
           let oc = open_out ("/proc/self/fd/" ^ fd) in
           output_string oc line;
           close_out oc
       | None -> print_string line)
  | exception Xenguest.Error { message; _ } ->
      (* The binary's error line. *)
      prerr_endline ("error:" ^ message);
      exit 1
