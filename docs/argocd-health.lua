-- Argo CD health check for every amlops.dev kind (InferenceCluster, ClusterAttachment,
-- AzureMLExtension, KubernetesCompute): install it as
-- resource.customizations.health.amlops.dev_<Kind> in argocd-cm
-- (docs/argocd-cm-patch.yaml; docs/gitops.md explains why Argo CD needs it).
--
--   status.observedGeneration behind metadata.generation -> Progressing
--   Stalled=True  (user action needed: invalid spec, conflict, ...) -> Degraded
--   Ready=True                                                     -> Healthy
--   anything else (creating, attaching, reattaching, ReattachPending) -> Progressing
local hs = {status = "Progressing", message = "Waiting for the amlops controller to report status"}
if obj.status == nil then
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end

local ready = nil
local stalled = nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    -- a condition written for an older generation says nothing about the current spec
    local current = generation == nil or condition.observedGeneration == nil
      or condition.observedGeneration >= generation
    if current and condition.type == "Ready" then
      ready = condition
    elseif current and condition.type == "Stalled" then
      stalled = condition
    end
  end
end

local function describe(condition, fallback)
  local reason = condition.reason or fallback
  if condition.message ~= nil and condition.message ~= "" then
    return reason .. ": " .. condition.message
  end
  return reason
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end
if ready ~= nil then
  hs.message = describe(ready, "NotReady")
end
if obj.status.phase ~= nil then
  hs.message = "Phase " .. obj.status.phase .. ": " .. hs.message
end
return hs
