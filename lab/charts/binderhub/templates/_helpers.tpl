{{/* Labels of BinderHub's own objects, as jupyterhub/binderhub sets them. Call with (dict "root" $ "component" "name"). */}}
{{- define "binderhub.labels" -}}
app: binder
component: {{ .component }}
release: {{ .root.Release.Name }}
heritage: {{ .root.Release.Service }}
{{- end }}

{{- define "binderhub.matchLabels" -}}
app: binder
component: {{ .component }}
release: {{ .root.Release.Name }}
{{- end }}

{{/* Labels of the bundled JupyterHub's objects, as the jupyterhub chart 0.11.1 sets them. */}}
{{- define "jupyterhub.labels" -}}
app: jupyterhub
component: {{ .component }}
release: {{ .root.Release.Name }}
chart: jupyterhub-0.11.1
heritage: {{ .root.Release.Service }}
{{- end }}

{{- define "jupyterhub.matchLabels" -}}
app: jupyterhub
component: {{ .component }}
release: {{ .root.Release.Name }}
{{- end }}

{{/* The two secrets the charts of this era require. */}}
{{- define "binderhub.apiToken" -}}
{{ required "jupyterhub.hub.services.binder.apiToken is required: generate it with `openssl rand -hex 32`" .Values.jupyterhub.hub.services.binder.apiToken }}
{{- end }}

{{- define "jupyterhub.proxyToken" -}}
{{ required "Proxy token must be a 32 byte random string generated with `openssl rand -hex 32`!" .Values.jupyterhub.proxy.secretToken }}
{{- end }}

{{/* BinderHub's configuration: every config.* section, with BinderHub's own defaults filled in. */}}
{{- define "binderhub.config" -}}
{{- $binderhub := merge (deepCopy (.Values.config.BinderHub | default dict)) (dict "base_url" "/" "hub_url" "" "use_registry" true "image_prefix" "" "auth_enabled" false) -}}
{{- $config := merge (dict "BinderHub" $binderhub) (deepCopy .Values.config) -}}
{{- $_ := set $config "jupyterhub_base_url" .Values.jupyterhub.hub.baseUrl -}}
{{- with .Values.jupyterhub.hub.services.binder }}
{{- $_ := set $config "jupyterhub_oauth" (dict "client_id" (.oauth_client_id | default "") "redirect_uri" (.oauth_redirect_uri | default "")) -}}
{{- end }}
{{- toJson $config -}}
{{- end }}
